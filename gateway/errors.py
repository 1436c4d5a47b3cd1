"""What goes wrong with Redis, as the gateway names it. A leaf: imports nothing from the gateway, so
every module (the breaker, the connection helpers, the script transport) can share these types."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

__all__ = ["REDIS_ERRORS", "RedisUnavailable", "RoundTripFailed"]

#: What a Redis call raises when the server is down, slow or gone.
REDIS_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)


class RedisUnavailable(Exception):
    """Redis could not be used for this call (error, timeout, or the breaker is open)."""


class RoundTripFailed(RedisConnectionError):
    """One round trip of a batch failed; every caller in it sees the same exception object, so a
    circuit breaker counts the round trip once, not once per caller."""

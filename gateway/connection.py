"""How components reach the Redis client they were given (a client, or a callable returning one)."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

from gateway.errors import RedisUnavailable
from gateway.types import RedisClient, RedisSource

_IS_CLIENT: dict[type, bool] = {}


def resolve_client(source: RedisSource) -> RedisClient | None:
    """A client given directly (standalone or cluster), or the one a factory returns now."""
    # isinstance() against redis-py's client classes goes through typing's Protocol machinery (a few
    # microseconds, on every Redis call of every request): decide once per type.
    kind = type(source)
    is_client = _IS_CLIENT.get(kind)
    if is_client is None:
        is_client = _IS_CLIENT[kind] = isinstance(source, (Redis, RedisCluster))
    if is_client:
        return source  # type: ignore[return-value]
    return source()  # type: ignore[operator]


def require_client(source: RedisSource) -> RedisClient:
    """Like ``resolve_client``, but no client is an outage (``RedisUnavailable``)."""
    client = resolve_client(source)
    if client is None:
        raise RedisUnavailable("no Redis client (is the app's lifespan running?)")
    return client

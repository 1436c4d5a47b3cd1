"""Kapı's gateway: pure ASGI middleware and Redis-backed building blocks for any ASGI app."""

from gateway.bodylimit import BodyLimitMiddleware
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.breaker import CircuitBreaker, RedisUnavailable
from gateway.cache import CachedFunction, CacheResult, cached
from gateway.keys import Keys
from gateway.limits import Limit, parse_limits
from gateway.problem import ProblemResponse

__all__ = [
    "BodyLimitMiddleware",
    "CacheResult",
    "CachedFunction",
    "CircuitBreaker",
    "ErrorBoundaryMiddleware",
    "Keys",
    "Limit",
    "ProblemResponse",
    "RedisUnavailable",
    "cached",
    "parse_limits",
]

"""Kapı's gateway: pure ASGI middleware and Redis-backed building blocks for any ASGI app."""

from gateway.auth import AuthMiddleware, TokenUser
from gateway.blacklist import TokenBlacklist, Verdict
from gateway.bodylimit import BodyLimitMiddleware
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.breaker import CircuitBreaker, RedisUnavailable
from gateway.cache import CachedFunction, CacheResult, cached
from gateway.headerlimit import HeaderLimitMiddleware
from gateway.keys import Keys
from gateway.limits import Limit, parse_limits
from gateway.otp import OtpStore
from gateway.problem import ProblemResponse
from gateway.routing import EndpointResolver
from gateway.sessions import SessionStore
from gateway.tokens import InvalidToken, TokenIssuer, TokenVerifier

__all__ = [
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "CacheResult",
    "CachedFunction",
    "CircuitBreaker",
    "EndpointResolver",
    "ErrorBoundaryMiddleware",
    "HeaderLimitMiddleware",
    "InvalidToken",
    "Keys",
    "Limit",
    "OtpStore",
    "ProblemResponse",
    "RedisUnavailable",
    "SessionStore",
    "TokenBlacklist",
    "TokenIssuer",
    "TokenUser",
    "TokenVerifier",
    "Verdict",
    "cached",
    "parse_limits",
]

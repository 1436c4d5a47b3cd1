"""Kapı's gateway: pure ASGI middleware and Redis-backed building blocks for any ASGI app."""

__version__ = "0.2.0"

from gateway.auth import AuthMiddleware, TokenUser
from gateway.blacklist import TokenBlacklist, Verdict
from gateway.bodylimit import BodyLimitMiddleware
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.breaker import CircuitBreaker, RedisUnavailable
from gateway.cache import CachedFunction, CacheResult, cached
from gateway.headerlimit import HeaderLimitMiddleware
from gateway.keys import Keys
from gateway.limiter import LocalLimiter, RateLimiter
from gateway.limits import Limit, parse_limits
from gateway.otp import OtpStore
from gateway.problem import ProblemResponse
from gateway.ratelimit import Policy, RateLimitMiddleware
from gateway.requestid import RequestIdMiddleware
from gateway.routing import EndpointResolver
from gateway.sessions import SessionStore
from gateway.stack import GatewayMiddleware
from gateway.tokens import InvalidToken, TokenIssuer, TokenVerifier

__all__ = [
    "AuthMiddleware",
    "BodyLimitMiddleware",
    "CacheResult",
    "CachedFunction",
    "CircuitBreaker",
    "EndpointResolver",
    "ErrorBoundaryMiddleware",
    "GatewayMiddleware",
    "HeaderLimitMiddleware",
    "InvalidToken",
    "Keys",
    "Limit",
    "LocalLimiter",
    "OtpStore",
    "Policy",
    "ProblemResponse",
    "RateLimitMiddleware",
    "RateLimiter",
    "RedisUnavailable",
    "RequestIdMiddleware",
    "SessionStore",
    "TokenBlacklist",
    "TokenIssuer",
    "TokenUser",
    "TokenVerifier",
    "Verdict",
    "cached",
    "parse_limits",
]

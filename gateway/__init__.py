"""Kapı's gateway: pure ASGI middleware and Redis-backed building blocks for any ASGI app.

The top level is what an app composes:

- middleware: ``GatewayMiddleware`` (authentication and rate limiting in one Redis round trip),
  ``AuthMiddleware`` and ``RateLimitMiddleware`` (one each), and the small layers
  ``ErrorBoundaryMiddleware``, ``BodyLimitMiddleware``, ``HeaderLimitMiddleware``,
  ``RequestIdMiddleware``;
- their configuration: ``AuthRules``, ``RateLimits``, ``Policy`` and the ``@limit`` decorator,
  ``EndpointResolver`` (one per app, shared), ``Keys`` (a key prefix), ``ClientAddress`` (trusted
  proxies), ``CircuitBreaker``, ``GatewayEvents`` (metrics hooks);
- tokens and keys: ``TokenVerifier``, ``TokenIssuer``, ``KeySet`` (ours, rotatable), ``JwksKeySet``
  (an identity provider's), ``InvalidToken``;
- the Redis-backed parts: ``TokenBlacklist`` (revocation), ``SessionStore`` (logins), ``RateLimiter``,
  the ``@cached`` decorator and its coherent in-process tier ``NearCache``, ``StreamGuard`` (closes
  WebSockets and SSE streams whose token stops being valid); ``RedisUnavailable``;
- ``ProblemResponse``: the ``application/problem+json`` errors they answer with.

Building blocks live in named submodules, each documented: ``gateway.tokens``, ``gateway.signing_keys``,
``gateway.jwks``, ``gateway.blacklist``, ``gateway.sessions``, ``gateway.otp``, ``gateway.epoch``,
``gateway.ratelimit``, ``gateway.cache``, ``gateway.nearcache``, ``gateway.routing``, ``gateway.auth``,
``gateway.checks``, ``gateway.streams``, ``gateway.requestid``, ``gateway.scripts``, ``gateway.errors``,
``gateway.types``;
``gateway.testing`` gives tests a real ``redis-server``; ``gateway.integrations`` has FastAPI and
Django helpers.
"""

#: The package version (the installed distribution, ``kapi``, has the same).
__version__ = "0.2.0"

from gateway.auth import AuthMiddleware, AuthRules
from gateway.blacklist import TokenBlacklist
from gateway.bodylimit import BodyLimitMiddleware
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.breaker import CircuitBreaker
from gateway.cache import cached
from gateway.checks import GatewayMiddleware
from gateway.clientip import ClientAddress
from gateway.errors import RedisUnavailable
from gateway.events import GatewayEvents
from gateway.headerlimit import HeaderLimitMiddleware
from gateway.jwks import JwksKeySet
from gateway.nearcache import NearCache
from gateway.problem import ProblemResponse
from gateway.ratelimit import Policy, RateLimiter, RateLimitMiddleware, RateLimits, limit
from gateway.redis_keys import Keys
from gateway.requestid import RequestIdMiddleware
from gateway.routing import EndpointResolver
from gateway.sessions import SessionStore
from gateway.signing_keys import KeySet
from gateway.streams import StreamGuard
from gateway.tokens import InvalidToken, TokenIssuer, TokenVerifier

__all__ = [
    "AuthMiddleware",
    "AuthRules",
    "BodyLimitMiddleware",
    "CircuitBreaker",
    "ClientAddress",
    "EndpointResolver",
    "ErrorBoundaryMiddleware",
    "GatewayEvents",
    "GatewayMiddleware",
    "HeaderLimitMiddleware",
    "InvalidToken",
    "JwksKeySet",
    "KeySet",
    "Keys",
    "NearCache",
    "Policy",
    "ProblemResponse",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimits",
    "RedisUnavailable",
    "RequestIdMiddleware",
    "SessionStore",
    "StreamGuard",
    "TokenBlacklist",
    "TokenIssuer",
    "TokenVerifier",
    "__version__",
    "cached",
    "limit",
]

"""Kapı's gateway: pure ASGI middleware and Redis-backed building blocks for any ASGI app.

- ``GatewayMiddleware``: authentication and rate limiting in one Redis round trip (``checks``);
  ``AuthMiddleware`` and ``RateLimitMiddleware`` do one each.
- ``TokenVerifier``/``TokenIssuer`` (JWTs), ``KeySet`` (our rotatable keys, ``kid`` derived from
  each key), ``JwksKeySet`` (an identity provider's), ``TokenBlacklist`` (revocation), ``SessionStore``
  (logins), ``OtpStore`` (one-time codes), ``DataLossEpoch``.
- ``cached``: a read-through cache decorator with leases; ``NearCache``, its coherent in-process tier.
- Smaller layers: ``ErrorBoundaryMiddleware``, ``BodyLimitMiddleware``, ``HeaderLimitMiddleware``,
  ``RequestIdMiddleware``.
- ``gateway.testing``: a real ``redis-server`` for tests (and its pytest plugin);
  ``gateway.integrations``: FastAPI, Starlette and Django helpers.
"""

__version__ = "0.2.0"

from gateway.auth import (
    Anonymous,
    Authenticator,
    AuthFailure,
    AuthMiddleware,
    AuthRules,
    TokenUser,
    bearer_token,
    challenge,
)
from gateway.blacklist import TokenBlacklist, Verdict
from gateway.bodylimit import BodyLimitMiddleware
from gateway.boundary import ErrorBoundaryMiddleware
from gateway.breaker import CircuitBreaker
from gateway.cache import CachedFunction, CacheResult, CacheStats, Generation, cached
from gateway.checks import GatewayMiddleware, Outcome, RequestChecks
from gateway.clientip import ClientAddress
from gateway.epoch import DataLossEpoch
from gateway.errors import REDIS_ERRORS, RedisUnavailable
from gateway.events import GatewayEvents
from gateway.headerlimit import HeaderLimitMiddleware
from gateway.jwks import JwksKeySet, KeysUnavailable, UnknownKey
from gateway.keys import Keys, escape
from gateway.keyset import Key, KeySet, split_keys
from gateway.nearcache import NearCache
from gateway.otp import OtpCheck, OtpStore
from gateway.problem import ProblemResponse
from gateway.ratelimit import (
    QUOTA_EXCEEDED,
    Decision,
    Limit,
    LimitState,
    LocalLimiter,
    Plan,
    Policy,
    PolicyChooser,
    RateLimiter,
    RateLimitMiddleware,
    RateLimits,
    limit,
    parse_limits,
    too_many_requests,
)
from gateway.requestid import RequestIdMiddleware, assign_request_id, request_id
from gateway.routing import UNMATCHED, EndpointResolver
from gateway.scripts import scripts_loaded
from gateway.sessions import Rotation, Session, SessionStore, SessionTiming
from gateway.tokens import HMAC_ALGORITHMS, Claims, InvalidToken, TokenIssuer, TokenPair, TokenVerifier, new_id
from gateway.types import ASGIApp, Message, Receive, RedisClient, RedisSource, Scope, Send

__all__ = [
    "HMAC_ALGORITHMS",
    "QUOTA_EXCEEDED",
    "REDIS_ERRORS",
    "UNMATCHED",
    "ASGIApp",
    "Anonymous",
    "AuthFailure",
    "AuthMiddleware",
    "AuthRules",
    "Authenticator",
    "BodyLimitMiddleware",
    "CacheResult",
    "CacheStats",
    "CachedFunction",
    "CircuitBreaker",
    "Claims",
    "ClientAddress",
    "DataLossEpoch",
    "Decision",
    "EndpointResolver",
    "ErrorBoundaryMiddleware",
    "GatewayEvents",
    "GatewayMiddleware",
    "Generation",
    "HeaderLimitMiddleware",
    "InvalidToken",
    "JwksKeySet",
    "Key",
    "KeySet",
    "Keys",
    "KeysUnavailable",
    "Limit",
    "LimitState",
    "LocalLimiter",
    "Message",
    "NearCache",
    "OtpCheck",
    "OtpStore",
    "Outcome",
    "Plan",
    "Policy",
    "PolicyChooser",
    "ProblemResponse",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimits",
    "Receive",
    "RedisClient",
    "RedisSource",
    "RedisUnavailable",
    "RequestChecks",
    "RequestIdMiddleware",
    "Rotation",
    "Scope",
    "Send",
    "Session",
    "SessionStore",
    "SessionTiming",
    "TokenBlacklist",
    "TokenIssuer",
    "TokenPair",
    "TokenUser",
    "TokenVerifier",
    "UnknownKey",
    "Verdict",
    "__version__",
    "assign_request_id",
    "bearer_token",
    "cached",
    "challenge",
    "escape",
    "limit",
    "new_id",
    "parse_limits",
    "request_id",
    "scripts_loaded",
    "split_keys",
    "too_many_requests",
]

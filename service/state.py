"""``Kapi``: the ready parts of one app, on ``app.state.kapi``. It holds them, it does no work: sign-in
is ``service.auth.SignIn``, the listing read/write path ``service.listings.Listings``.

``redis`` and ``database`` are set by the lifespan; the parts built before it take
``kapi.current_redis`` (a callable), so they always use the client of the running lifespan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from databases import Database
from starlette.requests import Request

from gateway import (
    HMAC_ALGORITHMS,
    CircuitBreaker,
    ClientAddress,
    JwksKeySet,
    Keys,
    KeySet,
    NearCache,
    OtpStore,
    RateLimiter,
    RedisClient,
    SessionStore,
    TokenBlacklist,
    TokenIssuer,
    TokenVerifier,
)
from service.accesslog import AccessLog
from service.metrics import Metrics
from service.otp_sender import LogOtpSender, OtpSender
from service.settings import Settings


@dataclass
class Kapi:
    settings: Settings
    otp_sender: OtpSender = field(default_factory=lambda: LogOtpSender(reveal_code=False))
    metrics: Metrics = field(default_factory=Metrics)
    redis: RedisClient | None = None
    database: Database | None = None

    def __post_init__(self) -> None:
        from service.auth import SignIn
        from service.listings import Listings

        settings = self.settings
        redis = self.current_redis
        self.keys = Keys(settings.key_prefix, cluster=settings.redis_mode == "cluster")
        self.breaker = CircuitBreaker(events=self.metrics)
        secret = str(settings.jwt_secret)
        previous = [str(key) for key in settings.jwt_previous_secrets]
        signing = KeySet(secret, algorithm=settings.jwt_algorithm, previous=previous)
        verifying = signing
        if settings.jwt_public_key and settings.jwt_algorithm not in HMAC_ALGORITHMS:
            # Tokens minted elsewhere, verified with the public key given (ours as well as before).
            verifying = KeySet(
                str(settings.jwt_public_key), algorithm=settings.jwt_algorithm, previous=[secret, *previous]
            )
        self.verifier = TokenVerifier(
            keys=verifying,
            jwks=JwksKeySet(settings.jwt_jwks_url, algorithm=settings.jwt_jwks_algorithm)
            if settings.jwt_jwks_url
            else None,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
        )
        self.issuer = TokenIssuer(
            keys=signing,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        self.sessions = SessionStore(
            redis,
            keys=self.keys,
            ttl=settings.session_ttl,
            refresh_grace=settings.refresh_reuse_grace,
            breaker=self.breaker,
        )
        self.blacklist = TokenBlacklist(
            redis,
            keys=self.keys,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
            sessions=self.sessions,
            breaker=self.breaker,
        )
        self.otp = OtpStore(
            redis,
            secret=b"otp:" + secret.encode(),
            keys=self.keys,
            max_failures=settings.otp_max_failures,
            breaker=self.breaker,
        )
        self.limiter = RateLimiter(redis, breaker=self.breaker)
        self.client_ip = ClientAddress(settings.trusted_proxies)
        self.sign_in = SignIn(self)
        #: One line per request (ACCESS_LOG), written in batches by the metrics layer.
        logs_info = settings.log_level in ("DEBUG", "INFO")  # an access line is an INFO record
        self.access_log = AccessLog(json=settings.production) if settings.access_log and logs_info else None
        #: Hot listings in process memory, kept coherent by Redis (NEAR_CACHE).
        self.near = (
            NearCache(
                redis=redis,
                prefixes=[self.keys("listing:")],
                max_entries=settings.near_cache_max_entries,
                max_bytes=settings.near_cache_max_bytes,
                max_age=settings.near_cache_max_age,
                events=self.metrics,
            )
            if settings.near_cache
            else None
        )
        self.listings = Listings(self)

    def current_redis(self) -> RedisClient | None:
        return self.redis

    def require_database(self) -> Database:
        if self.database is None:
            raise RuntimeError("the database is not connected (is the app's lifespan running?)")
        return self.database

    @staticmethod
    def of(request: Request) -> Kapi:
        kapi: Kapi = request.app.state.kapi
        return kapi


def current_user(request: Request) -> str | None:
    """The authenticated user's id, or None."""
    user = request.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.identity)

"""Per-app resources: the one Redis client and database of this process, and what is built on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from databases import Database
from starlette.requests import Request

from gateway.blacklist import TokenBlacklist
from gateway.breaker import CircuitBreaker, RedisUnavailable
from gateway.cache import CachedFunction, cached
from gateway.clientip import ClientAddress
from gateway.keys import Keys
from gateway.limiter import LocalLimiter, RateLimiter
from gateway.otp import OtpStore
from gateway.problem import ProblemResponse
from gateway.ratelimit import Policy, too_many_requests
from gateway.sessions import SessionStore
from gateway.tokens import HMAC_ALGORITHMS, TokenIssuer, TokenPair, TokenVerifier, new_id
from gateway.types import RedisClient
from service.metrics import Metrics
from service.otp_sender import LogOtpSender, OtpSender
from service.settings import Settings
from service.store import ListingStore, now_rfc3339
from service.users import UserStore

OTP_PER_PHONE = Policy.of("otp-phone", "5/hour")


@dataclass
class Kapi:
    """Everything a handler needs, on ``app.state.kapi``. ``redis`` and ``database`` are set by the
    lifespan; components built before it take ``lambda: kapi.redis``."""

    settings: Settings
    otp_sender: OtpSender = field(default_factory=lambda: LogOtpSender(reveal_code=False))
    metrics: Metrics = field(default_factory=Metrics)
    keys: Keys = field(init=False)
    breaker: CircuitBreaker = field(init=False)
    redis: RedisClient | None = None
    database: Database | None = None
    load_listing: CachedFunction[[int], dict[str, Any] | None] = field(init=False)
    verifier: TokenVerifier = field(init=False)
    issuer: TokenIssuer = field(init=False)
    blacklist: TokenBlacklist = field(init=False)
    sessions: SessionStore = field(init=False)
    otp: OtpStore = field(init=False)
    client_ip: ClientAddress = field(init=False)
    limiter: RateLimiter = field(init=False)
    local_limiter: LocalLimiter = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.keys = Keys(settings.key_prefix, cluster=settings.redis_mode == "cluster")
        self.breaker = CircuitBreaker(on_change=self.metrics.circuit_changed, on_call=self.metrics.redis_call)
        redis = self.current_redis

        @cached(
            "listing:{listing_id}",
            redis=redis,
            ttl=settings.cache_ttl,
            miss_ttl=settings.cache_miss_ttl,
            keys=self.keys,
            breaker=self.breaker,
            on_event=self.metrics.cache_event,
        )
        async def load_listing(listing_id: int) -> dict[str, Any] | None:
            return await self.store.get(listing_id)

        self.load_listing = load_listing
        secret = str(settings.jwt_secret)
        public = str(settings.jwt_public_key) if settings.jwt_public_key else secret
        self.verifier = TokenVerifier(
            key=public if settings.jwt_algorithm not in HMAC_ALGORITHMS else secret,
            algorithm=settings.jwt_algorithm,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
        )
        self.issuer = TokenIssuer(
            key=secret,
            algorithm=settings.jwt_algorithm,
            access_ttl=settings.access_token_ttl,
            refresh_ttl=settings.refresh_token_ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        self.blacklist = TokenBlacklist(
            redis,
            keys=self.keys,
            leeway=settings.jwt_leeway,
            max_lifetime=settings.jwt_max_lifetime,
            session_ttl=settings.session_ttl,
            breaker=self.breaker,
        )
        self.sessions = SessionStore(
            redis,
            keys=self.keys,
            ttl=settings.session_ttl,
            refresh_grace=settings.refresh_reuse_grace,
            breaker=self.breaker,
        )
        self.otp = OtpStore(
            redis,
            secret=b"otp:" + secret.encode(),
            keys=self.keys,
            max_failures=settings.otp_max_failures,
            breaker=self.breaker,
        )
        self.client_ip = ClientAddress(settings.trusted_proxies)
        self.limiter = RateLimiter(redis, breaker=self.breaker)
        self.local_limiter = LocalLimiter()

    def current_redis(self) -> RedisClient | None:
        return self.redis

    @property
    def store(self) -> ListingStore:
        return ListingStore(self._database())

    @property
    def users(self) -> UserStore:
        return UserStore(self._database())

    def _database(self) -> Database:
        if self.database is None:
            raise RuntimeError("the database is not connected (is the app's lifespan running?)")
        return self.database

    @staticmethod
    def of(request: Request) -> Kapi:
        kapi: Kapi = request.app.state.kapi
        return kapi

    async def open_session(self, user_id: str, *, ip: str, user_agent: str) -> TokenPair:
        """A new login: a session id, a token pair sharing it, and the session recorded in Redis."""
        session_id = new_id()
        pair = self.issuer.issue_pair(user_id, session_id=session_id)
        await self.sessions.open(user_id, session_id, refresh_jti=pair.refresh["jti"], ip=ip, user_agent=user_agent)
        return pair

    async def limit_phone(self, phone: str) -> ProblemResponse | None:
        """``POST /auth/otp``'s per-number limit (the number is in the body, so the middleware cannot
        see it): 429 once a number has asked for 5 codes in an hour."""
        key = self.keys.owned("rate_limit", Keys.client("phone", phone), "POST /auth/otp")
        try:
            decision = await self.limiter.hit(key, OTP_PER_PHONE.limits)
        except RedisUnavailable:
            decision = self.local_limiter.hit(key, OTP_PER_PHONE.limits)
        return None if decision.admitted else too_many_requests(OTP_PER_PHONE, decision)

    async def spend_send_budget(self) -> bool:
        """One code from the global budget (``OTP_SEND_BUDGET``, all numbers together): False once it
        is spent, which is how SMS pumping shows itself. Without Redis the local limiter counts."""
        policy = Policy("otp-send-budget", self.settings.otp_send_budget)
        key = self.keys("rate_limit:otp_send_budget")
        try:
            decision = await self.limiter.hit(key, policy.limits)
        except RedisUnavailable:
            decision = self.local_limiter.hit(key, policy.limits)
        return decision.admitted

    async def invalidate_listing(self, listing_id: int) -> None:
        """Delete the cache entry after a write. If Redis cannot be reached the key goes to the
        database outbox, which every process reads (and bypasses the cache for) until one of them
        has deleted the key in Redis: the write commits, and a stale entry is never served."""
        if not await self.load_listing.invalidate(listing_id):
            await self._database().execute(
                "INSERT INTO cache_invalidations (cache_key, created_at) VALUES (:key, :at) ON CONFLICT DO NOTHING",
                {"key": self.load_listing.key(listing_id), "at": now_rfc3339()},
            )

    async def drain_invalidations(self) -> int:
        """One pass over the outbox: learn the pending keys, retry them, forget the ones done."""
        database = self._database()
        rows = await database.fetch_all("SELECT cache_key FROM cache_invalidations")
        self.load_listing.pending.update(row[0] for row in rows)
        if not self.load_listing.pending:
            return 0
        done = await self.load_listing.retry_pending()
        for key in done:
            await database.execute("DELETE FROM cache_invalidations WHERE cache_key = :key", {"key": key})
        return len(done)

    async def check_owner(self, request: Request, listing_id: int) -> ProblemResponse | None:
        """403 unless the caller owns the listing (a missing listing is left to the handler's 404)."""
        listing = await self.store.get(listing_id)
        if listing is not None and listing["owner_id"] != current_user(request):
            return ProblemResponse(403, "Only the owner of this listing may change it.")
        return None


def current_user(request: Request) -> str | None:
    """The authenticated user's id, or None."""
    user = request.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.identity)

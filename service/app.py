"""The listing service: routes, the lifespan that owns Redis and the database, and the middleware
stack, assembled in one place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from gateway import (
    AuthRules,
    BodyLimitMiddleware,
    CircuitBreaker,
    ClientAddress,
    EndpointResolver,
    GatewayMiddleware,
    HeaderLimitMiddleware,
    JwksKeySet,
    Keys,
    KeySet,
    NearCache,
    Policy,
    ProblemResponse,
    RateLimiter,
    RateLimits,
    RedisUnavailable,
    SessionStore,
    TokenBlacklist,
    TokenIssuer,
    TokenVerifier,
)
from gateway.otp import OtpStore
from gateway.ratelimit import PolicyChooser
from gateway.ratelimit.reservations import Reservations
from gateway.revocation_view import RevocationView
from gateway.streams import StreamGuard
from gateway.tokens import HMAC_ALGORITHMS
from gateway.types import Scope
from service import auth, db, diagnostics, docs, listings, live, metrics
from service.accesslog import AccessLog
from service.catalog import EVENTS_STREAM, LISTING_PREFIX, Listings
from service.feed import Feed
from service.metrics import Metrics, MetricsMiddleware
from service.openapi import build_openapi
from service.otp_sender import LogOtpSender, OtpSender
from service.redis_client import create_redis, describe
from service.responses import JSON
from service.settings import Settings
from service.shortcut import RouteShortcut
from service.signin import SignIn
from service.state import Connections, Kapi

logger = logging.getLogger("service")


#: Where a token is optional. Everything else (listing writes, sessions) needs one.
PUBLIC_ENDPOINTS = (
    "GET /listings",
    "GET /listings/{listing_id}",
    *auth.PUBLIC,
    "/metrics",
    "/openapi.json",
    "/docs",
    "/docs/assets",
)
DIAGNOSTIC_ENDPOINTS = ("/test-redis", "/test-cache")

#: Where the gateway does not read the Authorization header at all (see ``gateway.AuthMiddleware``).
IGNORE_TOKEN = (*auth.IGNORE_TOKEN, "/health", "/ready")

#: Response headers browser code may read (CORS ``Access-Control-Expose-Headers``).
EXPOSED_HEADERS = (
    "RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After",
    "ETag", "X-Cache", "X-Request-ID", "WWW-Authenticate", "Location",
)  # fmt: skip


def build_routes(settings: Settings) -> list[BaseRoute]:
    # (the feed's path first: /listings/{listing_id} would take /listings/events)
    routes: list[BaseRoute] = [*live.routes, *listings.routes, *auth.routes, *diagnostics.probe_routes, *metrics.routes]
    if settings.diagnostics:
        routes += diagnostics.diagnostic_routes
    routes.append(Route("/openapi.json", openapi, methods=["GET"], name="openapi"))
    routes += docs.routes()
    return routes


def build_middleware(settings: Settings, kapi: Kapi, resolver: EndpointResolver) -> list[Middleware]:
    """The gateway stack, outermost first: every request passes these before the router. (No
    ErrorBoundaryMiddleware: inside Starlette, the ``Exception`` handler below answers a bug with the
    same problem+json 500.) CORS, when configured, sits outside the gateway: a preflight carries no
    token, so it must be answered before authentication and rate limiting. Innermost, the hot read
    route goes straight to its endpoint (``RouteShortcut``)."""
    cors = []
    if settings.cors_origins:
        cors = [
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_origins),
                allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", "If-None-Match", "X-Request-ID"],
                expose_headers=list(EXPOSED_HEADERS),
                max_age=600,
            )
        ]
    public = PUBLIC_ENDPOINTS + (DIAGNOSTIC_ENDPOINTS if settings.diagnostics else ())
    return [
        Middleware(
            MetricsMiddleware,
            metrics=kapi.metrics,
            resolver=resolver,
            request_ids=True,
            access_log=kapi.access_log,
        ),
        *cors,
        Middleware(HeaderLimitMiddleware, max_header_size=settings.max_header_size),
        Middleware(BodyLimitMiddleware, max_body_size=settings.max_body_size),
        Middleware(
            GatewayMiddleware,
            verifier=kapi.verifier,
            blacklist=kapi.blacklist,
            limiter=kapi.limiter,
            auth=AuthRules(public=public, ignore_token=IGNORE_TOKEN, fail_open=settings.auth_fail_open),
            limits=RateLimits(
                default=Policy("default", settings.rate_limit),
                overrides=RATE_LIMIT_OVERRIDES,
                exempt=RATE_LIMIT_EXEMPT,
                choose=tier_policy(settings),
                on_redis_error=settings.rate_limit_on_redis_error,
                shadow=settings.rate_limit_shadow,
            ),
            resolver=resolver,
            keys=kapi.keys,
            client_address=kapi.client_ip,
            view=kapi.view,
            reservations=kapi.reservations,
            events=kapi.metrics,
            streams=kapi.streams,
        ),
        Middleware(RouteShortcut, resolver=resolver, endpoints=["GET /listings/{listing_id}"]),
    ]


#: Strict limits on the sign-in routes, whatever RATE_LIMIT says (the per-phone one is in the handler).
RATE_LIMIT_OVERRIDES = {
    "POST /auth/otp": Policy.of("otp-ip", "20/hour", by="ip"),
    "POST /auth/login/phone": Policy.of("login-ip", "10/minute", by="ip"),
}
RATE_LIMIT_EXEMPT = ("/health", "/ready", "/metrics")


def tier_policy(settings: Settings) -> PolicyChooser:
    """Limits from a claim of the token (``RATE_LIMIT_TIER_CLAIM``, default ``tier``; a dotted path such
    as ``realm_access.roles`` reaches into an identity provider's claims, and in a list the first
    value that names a tier counts) matched against ``RATE_LIMIT_TIERS`` (e.g. ``pro:1000/hour``)."""
    tiers = {name: Policy(name, limits) for name, limits in settings.rate_limit_tiers.items()}
    path = settings.rate_limit_tier_claim.split(".")

    def choose(scope: Scope, user_id: str | None, endpoint: str) -> Policy | None:
        if not user_id:
            return None
        value: Any = getattr(scope.get("user"), "claims", {})
        for part in path:
            value = value.get(part) if isinstance(value, Mapping) else None
        for candidate in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(candidate, str) and candidate in tiers:
                return tiers[candidate]
        return None

    return choose


async def drain_invalidations(kapi: Kapi, every: float = 0.5) -> None:
    """Background task: retry cache invalidations that could not reach Redis (see Kapi)."""
    while True:
        await asyncio.sleep(every)
        try:
            drained = await kapi.listings.drain_invalidations()
        except Exception:
            logger.exception("draining cache invalidations failed; retrying")
        else:
            if drained:
                logger.info("delivered %d pending cache invalidation(s)", drained)


async def openapi(request: Request) -> Response:
    return JSON(request.app.state.openapi)


async def http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    detail = exc.detail if exc.detail else "The request could not be served."
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        location = slash_redirect(request.app.state.resolver, request.scope)
        if location is not None:
            return Response(status_code=307, headers={"Location": location})
        detail = f"Nothing here: {request.url.path[:200]}"
    if exc.status_code == 405:
        # Starlette names the methods of the first route that matched the path; list every route's.
        headers["Allow"] = ", ".join(request.app.state.resolver.allowed_methods(request.scope))
    return ProblemResponse(exc.status_code, detail, headers=headers)


def slash_redirect(resolver: EndpointResolver, scope: Scope) -> str | None:
    """Where ``/listings/1/`` should go (``/listings/1``, and the reverse), as a relative reference
    (RFC 9110 §10.2.2), or None. Starlette's own slash redirect builds an absolute URL from the
    request's ``Host`` header, which a client chooses: behind a cache that does not key on ``Host``,
    that is cache poisoning. So the router's is off and this one never names a host."""
    path: str = scope["path"]
    if path == "/":
        return None
    other = path[:-1] if path.endswith("/") else path + "/"
    if other.startswith("//") or not resolver.serves_path(scope, other):
        return None  # ("//host" would be a reference to another host)
    raw: bytes = scope.get("raw_path") or b""
    if path.endswith("/"):
        location = raw[:-1].decode("latin-1") if raw.endswith(b"/") else quote(other)  # (a %2F at the end)
    else:
        location = (raw or quote(path).encode()).decode("latin-1") + "/"
    if scope.get("query_string"):
        location += "?" + scope["query_string"].decode("latin-1")
    return location


async def database_error(request: Request, exc: Exception) -> Response:
    """SQLite busy past its timeout (writers queued behind a long write): 503, try again shortly."""
    if "locked" in str(exc) or "busy" in str(exc):
        logger.warning("database busy on %s %s: %s", request.method, request.url.path, exc)
        return ProblemResponse(503, "The database is busy; try again in a moment.", headers={"Retry-After": "1"})
    return await server_error(request, exc)


async def server_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return ProblemResponse(500, "The server could not complete this request; it has been logged.")


def assemble(settings: Settings, *, otp_sender: OtpSender | None = None) -> Kapi:
    """The object graph of one app, built in one place: every part gets what it uses explicitly. The
    Redis client and the database come later, with the lifespan (``Kapi.connections``)."""
    connections = Connections()
    redis = connections.current_redis
    metrics = Metrics()
    keys = Keys(settings.key_prefix, cluster=settings.redis_mode == "cluster")
    breaker = CircuitBreaker(events=metrics)
    secret = str(settings.jwt_secret)
    previous = [str(key) for key in settings.jwt_previous_secrets]
    signing = KeySet(secret, algorithm=settings.jwt_algorithm, previous=previous)
    verifying = signing
    if settings.jwt_public_key and settings.jwt_algorithm not in HMAC_ALGORITHMS:
        # Tokens minted elsewhere, verified with the public key given (ours as well as before).
        verifying = KeySet(str(settings.jwt_public_key), algorithm=settings.jwt_algorithm, previous=[secret, *previous])
    verifier = TokenVerifier(
        keys=verifying,
        jwks=JwksKeySet(settings.jwt_jwks_url, algorithm=settings.jwt_jwks_algorithm)
        if settings.jwt_jwks_url
        else None,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway=settings.jwt_leeway,
        max_lifetime=settings.jwt_max_lifetime,
    )
    issuer = TokenIssuer(
        keys=signing,
        access_ttl=settings.access_token_ttl,
        refresh_ttl=settings.refresh_token_ttl,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    sessions = SessionStore(
        redis, keys=keys, ttl=settings.session_ttl, refresh_grace=settings.refresh_reuse_grace, breaker=breaker
    )
    blacklist = TokenBlacklist(
        redis,
        keys=keys,
        leeway=settings.jwt_leeway,
        max_lifetime=settings.jwt_max_lifetime,
        sessions=sessions,
        breaker=breaker,
    )
    otp = OtpStore(
        redis, secret=b"otp:" + secret.encode(), keys=keys, max_failures=settings.otp_max_failures, breaker=breaker
    )
    limiter = RateLimiter(redis, breaker=breaker)
    logs_info = settings.log_level in ("DEBUG", "INFO")  # an access line is an INFO record
    near = (
        NearCache(
            redis=redis,
            prefixes=[keys(LISTING_PREFIX)],
            max_entries=settings.near_cache_max_entries,
            max_bytes=settings.near_cache_max_bytes,
            max_age=settings.near_cache_max_age,
            events=metrics,
        )
        if settings.near_cache
        else None
    )
    # The tracking channel: the near cache's, or one of its own; the stream guard listens on it for
    # revocations (every open WebSocket and SSE stream closed once its token stops being valid).
    channel = near if near is not None else NearCache(redis=redis, prefixes=[], events=metrics)
    streams = StreamGuard(blacklist=blacklist, channel=channel, keys=keys, per_user=settings.streams_per_user)
    # A warm request with no round trip: tokens found valid (coherent by the same channel) and budget
    # reserved ahead. Off: every request takes the gateway's one round trip.
    view = RevocationView(blacklist=blacklist, channel=channel, events=metrics) if settings.local_decisions else None
    reservations = Reservations(events=metrics) if settings.local_decisions else None
    catalog = Listings(
        redis=redis,
        database=connections.require_database,
        keys=keys,
        breaker=breaker,
        events=metrics,
        near=near,
        cache_ttl=settings.cache_ttl,
        miss_ttl=settings.cache_miss_ttl,
        search_ttl=settings.search_cache_ttl,
    )
    # The stream shares the search generation's slot on a cluster: one script bumps the one and adds to the other.
    catalog.feed = feed = Feed(
        redis=redis,
        stream=catalog.generation.scope(EVENTS_STREAM),
        max_len=settings.feed_max_len,
        buffer=settings.feed_buffer,
    )
    return Kapi(
        settings=settings,
        connections=connections,
        otp_sender=otp_sender or LogOtpSender(reveal_code=False),
        metrics=metrics,
        keys=keys,
        breaker=breaker,
        verifier=verifier,
        issuer=issuer,
        sessions=sessions,
        blacklist=blacklist,
        otp=otp,
        limiter=limiter,
        client_ip=ClientAddress(settings.trusted_proxies),
        sign_in=SignIn(
            issuer=issuer,
            sessions=sessions,
            limiter=limiter,
            keys=keys,
            database=connections.require_database,
            send_budget=settings.otp_send_budget,
        ),
        access_log=AccessLog(json=settings.production) if settings.access_log and logs_info else None,
        near=near,
        channel=channel,
        streams=streams,
        view=view,
        reservations=reservations,
        listings=catalog,
        feed=feed,
    )


def create_app(settings: Settings | None = None, *, otp_sender: OtpSender | None = None) -> Starlette:
    """The service as an ASGI app; ``settings`` default to the environment and ``.env``."""
    settings = settings or Settings.from_environ()
    if settings.production and settings.otp_test_numbers:
        logger.warning(
            "OTP_TEST_NUMBERS is set in production: %d number(s) sign in with a fixed code and receive no SMS",
            len(settings.otp_test_numbers),
        )
    kapi = assemble(settings, otp_sender=otp_sender or LogOtpSender(reveal_code=not settings.production))
    connections = kapi.connections

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connections.redis = redis = create_redis(settings)
        logger.info("redis: %s", describe(settings))
        connections.database = database = await db.connect(settings.database_url)
        try:
            await kapi.blacklist.epoch.ensure()
        except RedisUnavailable:
            logger.warning("redis unreachable at start-up; the service starts anyway and retries per request")
        drainer = asyncio.create_task(drain_invalidations(kapi))
        await kapi.channel.start()
        await kapi.feed.start()
        try:
            yield
        finally:
            drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await drainer
            await kapi.feed.aclose()
            await kapi.channel.aclose()  # open streams are closed: their revocations can no longer be seen
            await kapi.streams.aclose()
            if kapi.access_log is not None:
                kapi.access_log.flush()
            kapi.metrics.flush()
            await db.disconnect(database)
            await redis.aclose()
            connections.database = connections.redis = None

    routes = build_routes(settings)
    resolver = EndpointResolver(routes)  # the app's one resolver, shared by every layer
    app = Starlette(
        routes=routes,
        middleware=build_middleware(settings, kapi, resolver),
        exception_handlers={
            HTTPException: http_problem,
            sqlite3.OperationalError: database_error,
            Exception: server_error,
        },
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # see slash_redirect
    app.state.kapi = kapi
    app.state.resolver = resolver
    app.state.settings = settings
    app.state.metrics = kapi.metrics
    app.state.openapi = build_openapi(routes)
    return app

"""``Kapi``: the ready parts of one app, on ``app.state.kapi``. It holds them and does no work; the
app's composition root (``service.app.assemble``) builds them. Sign-in's logic is
``service.signin.SignIn``, the listing read/write path ``service.catalog.Listings``.

``Connections`` holds the clients of the running lifespan (set when it starts, cleared when it ends);
the parts built before it take ``connections.current_redis`` (a callable), so they always use the
client of the running lifespan.
"""

from __future__ import annotations

from dataclasses import dataclass

from databases import Database
from starlette.requests import Request

from gateway import (
    CircuitBreaker,
    ClientAddress,
    Keys,
    NearCache,
    RateLimiter,
    SessionStore,
    TokenBlacklist,
    TokenIssuer,
    TokenVerifier,
)
from gateway.otp import OtpStore
from gateway.ratelimit.reservations import Reservations
from gateway.revocation_view import RevocationView
from gateway.streams import StreamGuard
from gateway.types import RedisClient
from service.accesslog import AccessLog
from service.catalog import Listings
from service.feed import Feed
from service.metrics import Metrics
from service.otp_sender import OtpSender
from service.settings import Settings
from service.signin import SignIn


@dataclass
class Connections:
    """The Redis client and the database of the running lifespan (None outside it)."""

    redis: RedisClient | None = None
    database: Database | None = None

    def current_redis(self) -> RedisClient | None:
        return self.redis

    def require_database(self) -> Database:
        if self.database is None:
            raise RuntimeError("the database is not connected (is the app's lifespan running?)")
        return self.database


@dataclass
class Kapi:
    settings: Settings
    connections: Connections
    otp_sender: OtpSender
    metrics: Metrics
    keys: Keys
    breaker: CircuitBreaker
    verifier: TokenVerifier
    issuer: TokenIssuer
    sessions: SessionStore
    blacklist: TokenBlacklist
    otp: OtpStore
    limiter: RateLimiter
    client_ip: ClientAddress
    sign_in: SignIn
    #: One line per request (ACCESS_LOG), written in batches by the metrics layer; None when off.
    access_log: AccessLog | None
    #: Hot listings in process memory, kept coherent by Redis (NEAR_CACHE); None when off.
    near: NearCache | None
    #: The tracking channel (the near cache's, or one of its own): Redis pushes key changes on it.
    channel: NearCache
    #: Follows every open WebSocket and SSE stream; closes it once its token stops being valid.
    streams: StreamGuard
    #: Tokens Redis found valid, kept coherent by the channel (LOCAL_DECISIONS); None when off.
    view: RevocationView | None
    #: Rate-limit budget taken ahead of need and refusals in force (LOCAL_DECISIONS); None when off.
    reservations: Reservations | None
    listings: Listings
    #: Live listing changes (GET /listings/events): the stream's reader and the open feeds.
    feed: Feed

    @property
    def redis(self) -> RedisClient | None:
        return self.connections.redis

    @property
    def database(self) -> Database | None:
        return self.connections.database

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

"""Per-app resources: the one Redis client and database of this process, and what is built on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from databases import Database
from starlette.requests import Request

from gateway.breaker import CircuitBreaker
from gateway.cache import CachedFunction, cached
from gateway.keys import Keys
from gateway.problem import ProblemResponse
from gateway.types import RedisClient
from service.settings import Settings
from service.store import ListingStore


@dataclass
class Kapi:
    """Everything a handler needs, on ``app.state.kapi``. ``redis`` and ``database`` are set by the
    lifespan; components that are built before it take ``lambda: kapi.redis``."""

    settings: Settings
    keys: Keys
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    redis: RedisClient | None = None
    database: Database | None = None
    load_listing: CachedFunction[[int], dict[str, Any] | None] = field(init=False)

    def __post_init__(self) -> None:
        @cached(
            "listing:{listing_id}",
            redis=lambda: self.redis,
            ttl=self.settings.cache_ttl,
            miss_ttl=self.settings.cache_miss_ttl,
            keys=self.keys,
            breaker=self.breaker,
        )
        async def load_listing(listing_id: int) -> dict[str, Any] | None:
            return await self.store.get(listing_id)

        self.load_listing = load_listing

    @property
    def store(self) -> ListingStore:
        if self.database is None:
            raise RuntimeError("the database is not connected (is the app's lifespan running?)")
        return ListingStore(self.database)

    @staticmethod
    def of(request: Request) -> Kapi:
        kapi: Kapi = request.app.state.kapi
        return kapi

    async def invalidate_listing(self, listing_id: int) -> None:
        await self.load_listing.invalidate(listing_id)

    async def check_owner(self, request: Request, listing_id: int) -> ProblemResponse | None:
        """403 unless the caller owns the listing (a missing listing is left to the handler's 404)."""
        user = current_user(request)
        if user is None:
            return None  # writes are open until authentication is configured
        listing = await self.store.get(listing_id)
        if listing is not None and listing["owner_id"] != user:
            return ProblemResponse(403, "Only the owner of this listing may change it.")
        return None


def current_user(request: Request) -> str | None:
    """The authenticated user's id, or None (also when no authentication middleware runs)."""
    user = request.scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    identity: str = user.identity
    return identity

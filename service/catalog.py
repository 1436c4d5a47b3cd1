"""``Listings``: the listing read/write path (the database store, the cached read, the cached search
pages, the invalidation outbox, ownership). No HTTP here: the handlers are ``service.listings``."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson
from databases import Database

from gateway import CircuitBreaker, GatewayEvents, Keys, NearCache, RedisUnavailable, cached
from gateway.cache import CachedFunction, Generation
from gateway.types import RedisSource
from service import search
from service.feed import Change, Feed
from service.schemas import ListingCreate, ListingUpdate
from service.store import Listing, ListingQuery, ListingStore, now_rfc3339

#: Where one listing is cached (``listing:{listing_id}``): the near cache keeps copies under it.
LISTING_PREFIX = "listing:"
#: The listing events stream (``service.feed``), behind the search generation's hash tag on a cluster.
EVENTS_STREAM = "listings:events"


class Listings:
    """The listing read/write path. Reads go through ``@cached("listing:{listing_id}")``; every write
    deletes the entry before it answers, and when Redis cannot be reached the key goes to the
    database outbox (``cache_invalidations``), which every process reads (and bypasses the cache
    for) until one of them has deleted the key in Redis: the write commits, and a stale entry is
    never served.

    With a ``feed``, the same step publishes the write to the listing events stream (``service.feed``).
    A write whose step cannot reach Redis publishes nothing; when the outbox delivers its invalidation,
    the feed announces a ``reset`` instead (an event sent that late would arrive after later writes')."""

    def __init__(
        self,
        *,
        redis: RedisSource,
        database: Callable[[], Database],
        keys: Keys,
        breaker: CircuitBreaker,
        events: GatewayEvents,
        near: NearCache | None,
        cache_ttl: int,
        miss_ttl: int,
        search_ttl: int,
        feed: Feed | None = None,
    ) -> None:
        self._database = database
        #: Where each write is published in its invalidation step (None: nowhere).
        self.feed = feed

        @cached(
            LISTING_PREFIX + "{listing_id}",
            redis=redis,
            ttl=cache_ttl,
            miss_ttl=miss_ttl,
            keys=keys,
            breaker=breaker,
            events=events,
            near=near,
        )
        async def load_listing(listing_id: int) -> dict[str, Any] | None:
            return await self.store.get(listing_id)

        self.read: CachedFunction[[int], dict[str, Any] | None] = load_listing
        #: Every write bumps it in the step that deletes listing:{id}: all cached search pages go stale.
        self.generation = Generation("listings", redis=redis, keys=keys, breaker=breaker)

        @cached(
            "listings:search:{digest}",
            redis=redis,
            ttl=search_ttl,
            miss_ttl=None,
            keys=keys,
            breaker=breaker,
            events=events,
            generation=self.generation,
        )
        async def search_page(digest: str, query: ListingQuery) -> dict[str, Any]:
            items, next_cursor = await self.store.search(query)
            return {"items": items, "next_cursor": next_cursor}

        self.search: CachedFunction[[str, ListingQuery], dict[str, Any]] = search_page

    @property
    def database(self) -> Database:
        return self._database()

    @property
    def store(self) -> ListingStore:
        return ListingStore(self.database)

    async def create(self, data: ListingCreate, owner_id: str) -> Listing:
        listing = await self.store.create(data, owner_id=owner_id)
        # (a 404 for this id may have been cached before the row existed)
        await self.invalidate(listing["id"], Change("created", listing["id"], listing, [listing["city"]]))
        return listing

    async def update(self, listing_id: int, changes: ListingUpdate) -> Listing | None:
        # A listing that leaves a city is news to that city's feeds too: they hear of it by its old city.
        moves = self.feed is not None and "city" in changes.model_fields_set
        before = await self.store.get(listing_id) if moves else None
        listing = await self.store.update(listing_id, changes)
        cities = [listing["city"], *([before["city"]] if before else [])] if listing else []
        await self.invalidate(listing_id, Change("updated", listing_id, listing, cities) if listing else None)
        return listing

    async def delete(self, listing_id: int) -> bool:
        before = await self.store.get(listing_id) if self.feed is not None else None  # its city, for the feeds
        deleted = await self.store.delete(listing_id)
        cities = [before["city"]] if before else []
        await self.invalidate(listing_id, Change("deleted", listing_id, None, cities) if deleted else None)
        return deleted

    async def invalidate(self, listing_id: int, change: Change | None = None) -> None:
        """After a write: delete ``listing:{id}``, bump the search generation and publish ``change`` to
        the feed in one step, or queue the first two in the outbox when Redis is away."""
        publish = self.feed.publication(change) if self.feed is not None and change is not None else None
        if not await self.read.invalidate(listing_id, bump=self.generation, publish=publish):
            for key in (self.read.key(listing_id), self.generation.key):
                await self.database.execute(
                    "INSERT INTO cache_invalidations (cache_key, created_at) VALUES (:key, :at) ON CONFLICT DO NOTHING",
                    {"key": key, "at": now_rfc3339()},
                )

    async def drain_invalidations(self) -> int:
        """One pass over the outbox: learn the pending keys (and a pending generation), retry them,
        forget the ones done."""
        rows = await self.database.fetch_all("SELECT cache_key FROM cache_invalidations")
        keys = {row[0] for row in rows}
        if self.generation.key in keys:
            keys.discard(self.generation.key)
            self.generation.defer()
        self.read.defer(keys)
        if not self.read.pending and not self.generation.pending:
            return 0
        done = await self.read.retry_pending()
        # Some write's step never reached Redis, and its event was not published: the feeds start over.
        if self.generation.pending and await self.generation.retry_pending() and await self._announce_reset():
            done.append(self.generation.key)
        for key in done:
            await self.database.execute("DELETE FROM cache_invalidations WHERE cache_key = :key", {"key": key})
        return len(done)

    async def _announce_reset(self) -> bool:
        if self.feed is None:
            return True
        try:
            await self.feed.announce_reset()
        except RedisUnavailable:
            return False  # the outbox keeps the generation: the bump and the reset are tried again
        return True

    @staticmethod
    def digest(query: ListingQuery) -> str:
        """The search cache key part: the query as the store sees it (folded text, exact prices)."""
        normal = {
            "q": search.fold(query.q or ""),
            "city": search.fold(query.city) if query.city is not None else None,
            "min": str(query.min_price) if query.min_price is not None else None,
            "max": str(query.max_price) if query.max_price is not None else None,
            "limit": query.limit,
            "after": query.after_id,
        }
        return hashlib.blake2b(orjson.dumps(normal, option=orjson.OPT_SORT_KEYS), digest_size=16).hexdigest()

    async def may_change(self, user_id: str | None, listing_id: int) -> bool:
        """Whether ``user_id`` owns the listing (True for a missing one: that is the handler's 404)."""
        listing = await self.store.get(listing_id)
        return listing is None or listing["owner_id"] == user_id

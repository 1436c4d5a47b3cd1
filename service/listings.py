"""Listings: ``Listings``, the read/write path (the database store, the cached read, the invalidation
outbox, ownership), and the HTTP handlers over it."""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import CachedFunction, Generation, ProblemResponse, Receive, Scope, Send, cached
from service import search
from service.responses import JSON, parse_body, validation_problem
from service.schemas import ListingCreate, ListingUpdate, field_errors
from service.state import Kapi, current_user
from service.store import Listing, ListingQuery, ListingStore, now_rfc3339

if TYPE_CHECKING:
    from databases import Database

logger = logging.getLogger("service.listings")


class Listings:
    """The listing read/write path. Reads go through ``@cached("listing:{listing_id}")``; every write
    deletes the entry before it answers, and when Redis cannot be reached the key goes to the
    database outbox (``cache_invalidations``), which every process reads (and bypasses the cache
    for) until one of them has deleted the key in Redis: the write commits, and a stale entry is
    never served."""

    def __init__(self, kapi: Kapi) -> None:
        self.kapi = kapi
        settings = kapi.settings

        @cached(
            "listing:{listing_id}",
            redis=kapi.current_redis,
            ttl=settings.cache_ttl,
            miss_ttl=settings.cache_miss_ttl,
            keys=kapi.keys,
            breaker=kapi.breaker,
            events=kapi.metrics,
            near=kapi.near,
        )
        async def load_listing(listing_id: int) -> dict[str, Any] | None:
            return await self.store.get(listing_id)

        self.read: CachedFunction[[int], dict[str, Any] | None] = load_listing
        #: Every write bumps it in the step that deletes listing:{id}: all cached search pages go stale.
        self.generation = Generation("listings", redis=kapi.current_redis, keys=kapi.keys, breaker=kapi.breaker)

        @cached(
            "listings:search:{digest}",
            redis=kapi.current_redis,
            ttl=settings.search_cache_ttl,
            miss_ttl=None,
            keys=kapi.keys,
            breaker=kapi.breaker,
            events=kapi.metrics,
            generation=self.generation,
        )
        async def search_page(digest: str, query: ListingQuery) -> dict[str, Any]:
            items, next_cursor = await self.store.search(query)
            return {"items": items, "next_cursor": next_cursor}

        self.search: CachedFunction[[str, ListingQuery], dict[str, Any]] = search_page

    @property
    def database(self) -> Database:
        return self.kapi.require_database()

    @property
    def store(self) -> ListingStore:
        return ListingStore(self.database)

    async def create(self, data: ListingCreate, owner_id: str) -> Listing:
        listing = await self.store.create(data, owner_id=owner_id)
        await self.invalidate(listing["id"])  # a 404 for this id may have been cached before the row existed
        return listing

    async def update(self, listing_id: int, changes: ListingUpdate) -> Listing | None:
        listing = await self.store.update(listing_id, changes)
        await self.invalidate(listing_id)
        return listing

    async def delete(self, listing_id: int) -> bool:
        deleted = await self.store.delete(listing_id)
        await self.invalidate(listing_id)
        return deleted

    async def invalidate(self, listing_id: int) -> None:
        """After a write: delete ``listing:{id}`` and bump the search generation in one step, or queue
        both in the outbox when Redis is away."""
        if not await self.read.invalidate(listing_id, bump=self.generation):
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
            self.generation.pending = True
        self.read.pending.update(keys)
        if not self.read.pending and not self.generation.pending:
            return 0
        done = await self.read.retry_pending()
        if self.generation.pending and await self.generation.retry_pending():
            done.append(self.generation.key)
        for key in done:
            await self.database.execute("DELETE FROM cache_invalidations WHERE cache_key = :key", {"key": key})
        return len(done)

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

    async def check_owner(self, user_id: str | None, listing_id: int) -> ProblemResponse | None:
        """403 unless ``user_id`` owns the listing (a missing listing is left to the handler's 404)."""
        listing = await self.store.get(listing_id)
        if listing is not None and listing["owner_id"] != user_id:
            return ProblemResponse(403, "Only the owner of this listing may change it.")
        return None


_MAX_ID = 2**63 - 1


def parse_listing_id(raw: str) -> int | None:
    """The id from the path, or None for anything that cannot name a listing (404, never 500)."""
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19:
        return None
    value = int(raw)
    return value if 0 < value <= _MAX_ID else None


def etag_of(body: bytes) -> str:
    """A strong validator from the content alone, so every worker and host computes the same one."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


_etags: dict[bytes, bytes] = {}


def etag_bytes(body: bytes) -> bytes:
    """``etag_of`` as header bytes, remembered for the last few hundred bodies: a near-cache hit
    hands over the same bytes object every time, and its hash is computed once."""
    etag = _etags.get(body)
    if etag is None:
        if len(_etags) >= 512:
            _etags.clear()
        etag = _etags[body] = etag_of(body).encode()
    return etag


def etag_matches(if_none_match: str, etag: str) -> bool:
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))


def not_found(listing_id: str) -> ProblemResponse:
    return ProblemResponse(404, f"There is no listing with id {listing_id[:40]!r}.")


async def list_listings(request: Request) -> Response:
    try:
        query = ListingQuery.model_validate(dict(request.query_params))
        query.after_id  # noqa: B018  (validates the cursor)
    except ValidationError as exc:
        return validation_problem(field_errors(exc), "The query parameters are not valid.")
    except ValueError as exc:
        return validation_problem([{"field": "cursor", "message": str(exc)}], "The query parameters are not valid.")
    listings = Kapi.of(request).listings
    body, hit = await listings.search.lookup_json(listings.digest(query), query)
    return Response(body, media_type="application/json", headers={"X-Cache": "HIT" if hit else "MISS"})


async def create_listing(request: Request) -> Response:
    body = await parse_body(request, ListingCreate)
    if isinstance(body, Response):
        return body
    listing = await Kapi.of(request).listings.create(body, owner_id=current_user(request) or "anonymous")
    return JSON(listing, status_code=201, headers={"Location": f"/listings/{listing['id']}"})


_X_CACHE = {"local": b"HIT-LOCAL", "redis": b"HIT", "loader": b"MISS"}


class GetListing:
    """``GET /listings/{listing_id}``: the hot read path, written as a plain ASGI endpoint (no Request
    or Response objects) because it is what every client calls most; it sends the cached JSON bytes
    as they are, with a content ETag and ``X-Cache``."""

    __name__ = "get_listing"  # for the route's name
    __doc__ = "Read one listing through the Redis cache."

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_id = scope["path_params"]["listing_id"]
        listing_id = parse_listing_id(raw_id)
        if listing_id is None:
            await not_found(raw_id)(scope, receive, send)
            return
        kapi: Kapi = scope["app"].state.kapi
        body, source = await kapi.listings.read.read_json(listing_id)
        x_cache = _X_CACHE[source]
        if body == b"null":
            missing = ProblemResponse(
                404, f"There is no listing with id {listing_id}.", headers={"X-Cache": x_cache.decode()}
            )
            await missing(scope, receive, send)
            return
        etag = etag_bytes(body)
        headers = [(b"etag", etag), (b"x-cache", x_cache), (b"cache-control", b"no-cache")]
        if_none_match = next((value for name, value in scope["headers"] if name == b"if-none-match"), None)
        if if_none_match is not None and etag_matches(if_none_match.decode("latin-1"), etag.decode()):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


get_listing = GetListing()


async def update_listing(request: Request) -> Response:
    raw_id = request.path_params["listing_id"]
    listing_id = parse_listing_id(raw_id)
    if listing_id is None:
        return not_found(raw_id)
    body = await parse_body(request, ListingUpdate)
    if isinstance(body, Response):
        return body
    if not body.model_fields_set:
        return validation_problem([{"field": "body", "message": "give at least one field to change"}])
    listings = Kapi.of(request).listings
    denied = await listings.check_owner(current_user(request), listing_id)
    if denied is not None:
        return denied
    listing = await listings.update(listing_id, body)
    if listing is None:
        return not_found(raw_id)
    return JSON(listing)


async def delete_listing(request: Request) -> Response:
    raw_id = request.path_params["listing_id"]
    listing_id = parse_listing_id(raw_id)
    if listing_id is None:
        return not_found(raw_id)
    listings = Kapi.of(request).listings
    denied = await listings.check_owner(current_user(request), listing_id)
    if denied is not None:
        return denied
    deleted = await listings.delete(listing_id)
    if not deleted:
        return not_found(raw_id)
    return Response(status_code=204)


routes = [
    Route("/listings", list_listings, methods=["GET"], name="list_listings"),
    Route("/listings", create_listing, methods=["POST"], name="create_listing"),
    Route("/listings/{listing_id}", get_listing, methods=["GET", "HEAD"], name="get_listing"),
    Route("/listings/{listing_id}", update_listing, methods=["PATCH"], name="update_listing"),
    Route("/listings/{listing_id}", delete_listing, methods=["DELETE"], name="delete_listing"),
]

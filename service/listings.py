"""The ``/listings`` handlers and their routes (the read/write path they call is ``service.catalog``)."""

from __future__ import annotations

import hashlib

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import ProblemResponse
from gateway.types import Receive, Scope, Send
from service.responses import JSON, parse_body, validation_problem
from service.schemas import ListingCreate, ListingUpdate, field_errors
from service.state import Kapi, current_user
from service.store import ListingQuery

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
    if not await listings.may_change(current_user(request), listing_id):
        return ProblemResponse(403, "Only the owner of this listing may change it.")
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
    if not await listings.may_change(current_user(request), listing_id):
        return ProblemResponse(403, "Only the owner of this listing may change it.")
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

"""The OpenAPI 3 description, generated from the app's routes plus a table of what each operation
takes and returns. A route without an entry is still listed, so nothing goes undocumented."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from service import schemas
from service.schemas import PRICE_PATTERN

_PARAM = re.compile(r"{([^}:]+)(?::[^}]+)?}")
_SCHEMAS: tuple[type[BaseModel], ...] = (
    schemas.ListingCreate,
    schemas.ListingUpdate,
    schemas.ListingOut,
    schemas.ListingPage,
    schemas.Problem,
    schemas.CacheProbeWrite,
    schemas.CacheProbe,
    schemas.RedisStatus,
    schemas.OtpRequest,
    schemas.PhoneLogin,
    schemas.RefreshRequest,
    schemas.TokenResponse,
    schemas.SessionList,
)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {"schema": _ref("Problem")}}}


def _body(name: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(name)}}}


_ERRORS = {
    "400": _problem("The code is wrong, expired or used up"),
    "401": _problem("Missing, invalid or revoked token"),
    "403": _problem("Not the owner"),
    "404": _problem("Not found"),
    "406": _problem("Not asked for as an event stream (Accept: text/event-stream)"),
    "413": _problem("Body larger than MAX_BODY_SIZE"),
    "422": _problem("Validation error"),
    "429": {**_problem("Rate limit exceeded"), "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
    "431": _problem("Request headers too large"),
    "503": {
        **_problem("Redis (or the database) is unreachable"),
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ERRORS[code] for code in codes}


# Every operation can answer 431 (oversize headers). Operations the gateway checks a token on can answer
# 401 for a bad one, and 503 when Redis cannot check it; every rate-limited one 429; with a body, 413.
_GATED = ("401", "429", "431", "503")

_QUERY: list[dict[str, Any]] = []  # filled from ListingQuery below, so the document says what it validates

_CACHE_HEADERS = {
    "X-Cache": {"schema": {"type": "string", "enum": ["HIT-LOCAL", "HIT", "MISS"]}},
    "ETag": {"schema": {"type": "string"}},
}

_LISTING_ID = {
    "name": "listing_id", "in": "path", "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
}  # fmt: skip

#: A created listing's id, for the operations on /listings/{listing_id} (OpenAPI links: stateful testing).
_LISTING_LINKS = {
    name: {"operationId": name, "parameters": {"listing_id": "$response.body#/id"}}
    for name in ("get_listing", "update_listing", "delete_listing")
}

_EVENT_ID = {"type": "string", "pattern": r"^\d{1,20}-\d{1,20}$", "maxLength": 41, "examples": ["1718000000000-0"]}
_FEED_CITY = {
    "name": "city", "in": "query", "description": "only this city's listings (the whole value, Turkish-aware)",
    "schema": {"type": "string", "maxLength": 100, "pattern": r"^[^\x00]*$"},
}  # fmt: skip
_FEED_RESUME = {
    "name": "last_event_id", "in": "query", "schema": _EVENT_ID,
    "description": "resume after this event (the id of the last one seen); SSE: Last-Event-ID wins",
}  # fmt: skip

#: What each feed message holds (SSE: the data of a change or a reset; WebSocket: the same, with event_id).
_FEED_MESSAGE = {
    "oneOf": [
        {
            "type": "object",
            "required": ["type", "id", "listing"],
            "properties": {
                "type": {"enum": ["created", "updated", "deleted"]},
                "id": {"type": "integer"},
                "listing": {"oneOf": [_ref("ListingOut"), {"type": "null"}]},
                "event_id": _EVENT_ID,
            },
        },
        {
            "type": "object",
            "description": "events were missed (no longer kept, or lost): fetch the listings again, then go on",
            "required": ["type", "reason"],
            "properties": {"type": {"const": "reset"}, "reason": {"type": "string"}, "event_id": _EVENT_ID},
        },
    ]
}

_FEED_DESCRIPTION = """Every listing write (create, update, delete), by anyone, on any instance, in write order.

**SSE** (this operation, `Accept: text/event-stream`): each change is `id: <event id>` and `data:` the JSON
`{"type": "created" | "updated" | "deleted", "id", "listing"}` (`listing` as `GET /listings/{listing_id}`
returns it, `null` when deleted); `event: reset` with `{"type": "reset", "reason"}` when events were
missed (fetch the listings again, then go on); a comment `: ping` every `FEED_HEARTBEAT` seconds (15);
`event: close` with `{"type": "close", "reason"}` when the server ends the stream (reconnect with
`Last-Event-ID`). An update that moves a listing out of the `city` is sent to that city's feeds too.

**WebSocket** (the same path): the same JSON as text messages, with the event's id in `event_id`;
resume with `?last_event_id=`. Closed with 1013 when the client falls `FEED_BUFFER` events behind,
1001 when the server shuts down."""

OPERATIONS: dict[str, dict[str, Any]] = {
    "listing_events": {
        "summary": "Live listing changes as Server-Sent Events (or a WebSocket on the same path)",
        "description": _FEED_DESCRIPTION,
        "parameters": [
            _FEED_CITY,
            _FEED_RESUME,
            {"name": "Last-Event-ID", "in": "header", "schema": _EVENT_ID, "description": "resume after this event"},
        ],
        "responses": {
            "200": {
                "description": "The event stream (it ends only when the client leaves or the server closes it)",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "x-event-data": _FEED_MESSAGE}},
            },
            **_errors("406", "422", *_GATED),
        },
        "x-websocket": {
            "path": "/listings/events",
            "parameters": [_FEED_CITY, _FEED_RESUME],
            "messages": _FEED_MESSAGE,
            "close-codes": {"1001": "the server is shutting down", "1013": "fell behind: resume with last_event_id"},
        },
    },
    "list_listings": {
        "summary": "Search listings, newest first (Turkish-aware: İ/i/I/ı and ş ğ ç ö ü fold to their base)",
        "parameters": _QUERY,
        "responses": {
            "200": {
                **_json(_ref("ListingPage"), "A page of listings"),
                "headers": {"X-Cache": {"schema": {"type": "string", "enum": ["HIT-LOCAL", "HIT", "MISS"]}}},
            },
            **_errors("422", *_GATED),
        },
    },
    "create_listing": {
        "summary": "Create a listing",
        "requestBody": _body("ListingCreate"),
        "responses": {
            "201": {
                **_json(_ref("ListingOut"), "Created"),
                "headers": {"Location": {"schema": {"type": "string"}}},
                "links": _LISTING_LINKS,
            },
            **_errors("413", "422", *_GATED),
        },
    },
    "get_listing": {
        "summary": "Read one listing through the Redis cache",
        "parameters": [_LISTING_ID, {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            "200": {**_json(_ref("ListingOut"), "The listing"), "headers": _CACHE_HEADERS},
            "304": {"description": "Not modified", "headers": _CACHE_HEADERS},
            **_errors("404", *_GATED),
        },
    },
    "update_listing": {
        "summary": "Change a listing (owner only); its cache entry is gone before the response",
        "parameters": [_LISTING_ID],
        "requestBody": _body("ListingUpdate"),
        "responses": {
            "200": _json(_ref("ListingOut"), "The updated listing"),
            **_errors("403", "404", "413", "422", *_GATED),
        },
    },
    "delete_listing": {
        "summary": "Delete a listing (owner only); its cache entry is gone before the response",
        "parameters": [_LISTING_ID],
        "responses": {"204": {"description": "Deleted"}, **_errors("403", "404", *_GATED)},
    },
    "request_otp": {
        "summary": "Send a one-time sign-in code (5 minutes, 5 tries)",
        "requestBody": _body("OtpRequest"),
        "responses": {"202": _json({"type": "object"}, "Code sent"), **_errors("413", "422", *_GATED)},
    },
    "login_phone": {
        "summary": "Exchange phone and code for tokens; creates the user on first login",
        "requestBody": _body("PhoneLogin"),
        "responses": {
            "200": _json(_ref("TokenResponse"), "Tokens"),
            **_errors("400", "413", "422", *_GATED),
        },
    },
    "logout": {
        "summary": "Revoke this token and end its session (again: 204)",
        "responses": {"204": {"description": "Logged out"}, **_errors(*_GATED)},
    },
    "logout_all": {
        "summary": "Revoke every token of this user issued so far",
        "responses": {"204": {"description": "Logged out everywhere"}, **_errors(*_GATED)},
    },
    "refresh": {
        "summary": "Rotate a refresh token for a new token pair (reuse after the grace ends the login)",
        "requestBody": _body("RefreshRequest"),
        "responses": {"200": _json(_ref("TokenResponse"), "New tokens"), **_errors("413", "422", *_GATED)},
    },
    "list_sessions": {
        "summary": "Your active logins",
        "responses": {"200": _json(_ref("SessionList"), "Sessions"), **_errors(*_GATED)},
    },
    "end_session": {
        "summary": "End one of your logins; its tokens stop working",
        "responses": {"204": {"description": "Ended"}, **_errors("404", *_GATED)},
    },
    "test_redis": {
        "summary": "PING Redis: version, round-trip time, eviction policy warnings",
        "responses": {"200": _json(_ref("RedisStatus"), "Redis answers"), **_errors(*_GATED)},
    },
    "write_test_cache": {
        "summary": "Write key test_cache with a 60 s TTL",
        "requestBody": _body("CacheProbeWrite", required=False),
        "responses": {"201": _json(_ref("CacheProbe"), "Written"), **_errors("413", "422", *_GATED)},
    },
    "read_test_cache": {
        "summary": "Read key test_cache back",
        "responses": {
            "200": _json(_ref("CacheProbe"), "The cached value"),
            **_errors("404", *_GATED),
        },
    },
    "health": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "Alive"), **_errors("431")}},
    "ready": {
        "summary": "Readiness: Redis and the database answer",
        "responses": {"200": _json({"type": "object"}, "Ready"), **_errors("431", "503")},
    },
    "metrics": {
        "summary": "Prometheus metrics",
        "responses": {
            "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors("401", "431", "503"),
        },
    },
    "openapi": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors(*_GATED)},
    },
}


_QUERY_DESCRIPTIONS = {
    "q": "substring of title or description, Turkish-aware (sisli finds ŞİŞLİ)",
    "city": "the whole city, Turkish-aware (istanbul finds İstanbul)",
    "cursor": "next_cursor of the previous page",
}


def _query_parameters() -> list[dict[str, Any]]:
    from service.store import ListingQuery

    schema = ListingQuery.model_json_schema()
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if "anyOf" in prop:  # "x or null": a query parameter is simply left out
            options = [option for option in prop.pop("anyOf") if option.get("type") != "null"]
            prop = {**(options[0] if len(options) == 1 else {"anyOf": options}), **prop}
            prop.pop("default", None)
        if name in ("min_price", "max_price"):  # a query value is text: the price's string form
            prop = {"type": "string", "pattern": PRICE_PATTERN}
        if name in _QUERY_DESCRIPTIONS:
            prop["description"] = _QUERY_DESCRIPTIONS[name]
        parameters.append({"name": name, "in": "query", "schema": prop})
    return parameters


_QUERY.extend(_query_parameters())


#: Operations that take a bearer token: True when required, False when optional.
SECURED: dict[str, bool] = {
    "listing_events": True,
    "list_listings": False,
    "get_listing": False,
    "create_listing": True,
    "update_listing": True,
    "delete_listing": True,
    "logout": True,
    "logout_all": True,
    "list_sessions": True,
    "end_session": True,
}


def build_openapi(
    routes: list[BaseRoute], *, title: str = "Kapı listing service", version: str = "0.1.0"
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.include_in_schema:
            continue
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            operation = {"operationId": route.name, **OPERATIONS.get(route.name, {})}
            operation.setdefault("summary", (route.endpoint.__doc__ or route.name).strip().splitlines()[0])
            operation.setdefault("responses", {"200": {"description": "OK"}})
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            names = [name for name in _PARAM.findall(route.path) if name not in declared]
            if names:
                path_params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in names]
                operation["parameters"] = path_params + list(operation.get("parameters", []))
            if route.name in SECURED:
                required = SECURED[route.name]
                operation["security"] = [{"bearerAuth": []}] if required else [{"bearerAuth": []}, {}]
            paths.setdefault(_PARAM.sub(r"{\1}", route.path), {})[method.lower()] = operation

    components: dict[str, Any] = {}
    for model in _SCHEMAS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        components[model.__name__] = schema
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }

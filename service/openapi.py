"""The OpenAPI 3 description, generated from the app's routes plus a table of what each operation
takes and returns. A route without an entry is still listed, so nothing goes undocumented."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from starlette.routing import BaseRoute, Route

from service import auth, schemas

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
    auth.OtpRequest,
    auth.PhoneLogin,
    auth.RefreshRequest,
    auth.TokenResponse,
    auth.SessionList,
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
    "401": _problem("Missing, invalid or revoked token"),
    "413": _problem("Body too large"),
    "422": _problem("Validation error"),
    "429": _problem("Rate limit exceeded"),
    "503": _problem("A dependency (Redis) is unreachable"),
}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _ERRORS[code] for code in codes}


_QUERY = [
    {"name": "city", "in": "query", "schema": {"type": "string", "maxLength": 100}, "description": "exact match"},
    {"name": "min_price", "in": "query", "schema": {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"}},
    {"name": "max_price", "in": "query", "schema": {"type": "string", "pattern": r"^\d+(\.\d{1,2})?$"}},
    {"name": "q", "in": "query", "schema": {"type": "string", "maxLength": 200}, "description": "substring"},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
    {"name": "cursor", "in": "query", "schema": {"type": "string", "maxLength": 200}},
]

_CACHE_HEADERS = {
    "X-Cache": {"schema": {"type": "string", "enum": ["HIT", "MISS"]}},
    "ETag": {"schema": {"type": "string"}},
}

OPERATIONS: dict[str, dict[str, Any]] = {
    "list_listings": {
        "summary": "Search listings, newest first",
        "parameters": _QUERY,
        "responses": {"200": _json(_ref("ListingPage"), "A page of listings"), **_errors("422", "429")},
    },
    "create_listing": {
        "summary": "Create a listing",
        "requestBody": _body("ListingCreate"),
        "responses": {
            "201": {**_json(_ref("ListingOut"), "Created"), "headers": {"Location": {"schema": {"type": "string"}}}},
            **_errors("401", "413", "422", "429"),
        },
    },
    "get_listing": {
        "summary": "Read one listing through the Redis cache",
        "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
        "responses": {
            "200": {**_json(_ref("ListingOut"), "The listing"), "headers": _CACHE_HEADERS},
            "304": {"description": "Not modified", "headers": _CACHE_HEADERS},
            "404": _problem("No such listing"),
            **_errors("429"),
        },
    },
    "update_listing": {
        "summary": "Change a listing (owner only); its cache entry is gone before the response",
        "requestBody": _body("ListingUpdate"),
        "responses": {
            "200": _json(_ref("ListingOut"), "The updated listing"),
            "403": _problem("Not the owner"),
            "404": _problem("No such listing"),
            **_errors("401", "413", "422", "429"),
        },
    },
    "delete_listing": {
        "summary": "Delete a listing (owner only); its cache entry is gone before the response",
        "responses": {
            "204": {"description": "Deleted"},
            "403": _problem("Not the owner"),
            "404": _problem("No such listing"),
            **_errors("401", "429"),
        },
    },
    "request_otp": {
        "summary": "Send a one-time sign-in code (5 minutes, 5 tries)",
        "requestBody": _body("OtpRequest"),
        "responses": {"202": _json({"type": "object"}, "Code sent"), **_errors("422", "429", "503")},
    },
    "login_phone": {
        "summary": "Exchange phone and code for tokens; creates the user on first login",
        "requestBody": _body("PhoneLogin"),
        "responses": {
            "200": _json(_ref("TokenResponse"), "Tokens"),
            "400": _problem("Wrong, expired or locked code"),
            **_errors("422", "429", "503"),
        },
    },
    "logout": {
        "summary": "Revoke this token and end its session",
        "responses": {"204": {"description": "Logged out"}, **_errors("401", "503")},
    },
    "logout_all": {
        "summary": "Revoke every token of this user issued so far",
        "responses": {"204": {"description": "Logged out everywhere"}, **_errors("401", "503")},
    },
    "refresh": {
        "summary": "Rotate a refresh token for a new token pair (reuse ends the login)",
        "requestBody": _body("RefreshRequest"),
        "responses": {"200": _json(_ref("TokenResponse"), "New tokens"), **_errors("401", "422", "503")},
    },
    "list_sessions": {
        "summary": "Your active logins",
        "responses": {"200": _json(_ref("SessionList"), "Sessions"), **_errors("401", "503")},
    },
    "end_session": {
        "summary": "End one of your logins; its tokens stop working",
        "responses": {
            "204": {"description": "Ended"},
            "404": _problem("You have no such session"),
            **_errors("401", "503"),
        },
    },
    "test_redis": {
        "summary": "PING Redis: version and round-trip time",
        "responses": {"200": _json(_ref("RedisStatus"), "Redis answers"), **_errors("503")},
    },
    "write_test_cache": {
        "summary": "Write key test_cache with a 60 s TTL",
        "requestBody": _body("CacheProbeWrite", required=False),
        "responses": {"201": _json(_ref("CacheProbe"), "Written"), **_errors("422", "503")},
    },
    "read_test_cache": {
        "summary": "Read key test_cache back",
        "responses": {
            "200": _json(_ref("CacheProbe"), "The cached value"),
            "404": _problem("Expired or never written"),
            **_errors("503"),
        },
    },
    "health": {"summary": "Liveness", "responses": {"200": _json({"type": "object"}, "Alive")}},
    "ready": {
        "summary": "Readiness: Redis and the database answer",
        "responses": {"200": _json({"type": "object"}, "Ready"), **_errors("503")},
    },
    "metrics": {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    "openapi": {
        "summary": "This document",
        "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
    },
}

#: Operations that take a bearer token: True when required, False when optional.
SECURED: dict[str, bool] = {
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
            names = _PARAM.findall(route.path)
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

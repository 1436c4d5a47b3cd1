"""``EndpointResolver``: which endpoint a request is for, as ``"GET /listings/{listing_id}"``.

Rate limits and public-route rules are written against route templates, never raw paths, so
``/listings/1`` and ``/listings/2`` are one endpoint. For a Starlette or FastAPI app the templates
come from its routes; for any other ASGI app from configured patterns. ``HEAD`` is the ``GET``
endpoint (the same auth rule and budget, as Starlette serves ``HEAD`` from the ``GET`` route), and
every path that matches nothing is the one endpoint :data:`UNMATCHED`, so a scan of 10,000 unknown
paths is one budget (one Redis key) per client, not 10,000.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Host, Match, Mount, compile_path

from gateway.types import Scope

SCOPE_KEY = "gateway.endpoint"
KNOWN_KEY = "gateway.endpoint_known"

#: The endpoint of every request that matches no route or pattern.
UNMATCHED = "unmatched"

#: Methods a request may name an endpoint with; any other method (clients choose them) is unmatched.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"})


class EndpointResolver:
    """Resolves requests to endpoints, from ``routes`` (a Starlette/FastAPI ``app.routes``) and/or
    ``patterns`` (``"GET /items/{item_id}"``, or ``"/health"`` for any method)."""

    def __init__(
        self,
        routes: Sequence[BaseRoute] = (),
        *,
        patterns: Iterable[str] = (),
        cache_size: int = 4096,
    ) -> None:
        self.routes = list(routes)
        if isinstance(patterns, str):
            raise TypeError("patterns must be a list of endpoint strings, not one string")
        self.patterns: list[tuple[str, re.Pattern[str], str]] = []
        for pattern in patterns:
            method, template = split_endpoint(pattern)
            regex, _, _ = compile_path(template)
            self.patterns.append((method, regex, template))
        self.cache_size = cache_size
        self._cache: dict[tuple[str, str], tuple[str, bool]] = {}

    @property
    def routed(self) -> bool:
        """Whether the resolver knows any templates (else every request is :data:`UNMATCHED`)."""
        return bool(self.routes or self.patterns)

    def resolve(self, scope: Scope) -> str:
        """``"METHOD template"`` for this request (remembered in the scope for later layers)."""
        endpoint: str | None = scope.get(SCOPE_KEY)
        if endpoint is not None:
            return endpoint
        key = (scope["method"], scope["path"])
        found = self._cache.get(key)
        if found is None:
            found = self._match(scope)
            if len(self._cache) >= self.cache_size:
                self._cache.clear()
            self._cache[key] = found
        scope[SCOPE_KEY], scope[KNOWN_KEY] = found
        return found[0]

    def is_known(self, scope: Scope) -> bool:
        """Whether a route or pattern matched path and method (else the app answers 404 or 405)."""
        self.resolve(scope)
        return bool(scope[KNOWN_KEY])

    def _match(self, scope: Scope) -> tuple[str, bool]:
        """A route that matches path and method is "known"; one that matches only the path still
        names the endpoint (``"PUT /listings/{listing_id}"``), but the app will answer 405."""
        method = scope["method"]
        if method not in METHODS:
            return UNMATCHED, False
        as_get = {**scope, "method": "GET"} if method == "HEAD" else scope
        named = "GET" if method == "HEAD" else method
        found = _match_routes(self.routes, as_get, "")
        if found is not None:
            return f"{named} {found[0]}", found[1]
        for wanted, regex, template in self.patterns:
            if wanted in ("*", named) and regex.match(scope["path"]):
                return f"{named} {template}", True
        return UNMATCHED, False

    def templates(self) -> set[tuple[str, str]]:
        """Every ``(method, template)`` the routes and patterns serve (``"*"``: any method)."""
        found: set[tuple[str, str]] = set()
        _collect(self.routes, "", found)
        for method, _, template in self.patterns:
            found.add((method, template))
        return found

    def check(self, option: str, endpoints: Iterable[str]) -> None:
        """Raise ``ValueError`` naming any endpoint that matches no route (a renamed route must not
        silently lose its rule); ``TypeError`` for a plain string where a list is expected."""
        if isinstance(endpoints, str):
            raise TypeError(f"{option} must be a list of endpoint strings, not one string: {endpoints!r}")
        if not self.routed:
            return
        served = self.templates()
        for endpoint in endpoints:
            if endpoint == UNMATCHED:
                continue
            method, template = split_endpoint(endpoint)
            if not any(t == template and (method == "*" or m in ("*", method)) for m, t in served):
                raise ValueError(f"{option}: {endpoint!r} matches no route of the app")


def _collect(routes: Sequence[BaseRoute], prefix: str, found: set[tuple[str, str]]) -> None:
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        if isinstance(route, Mount):
            found.add(("*", path))
            _collect(route.routes, path, found)
        elif isinstance(route, Host):
            _collect(route.routes, prefix, found)
        else:
            methods = getattr(route, "methods", None)
            for method in methods or ("*",):
                found.add((method, path))


def _match_routes(routes: Sequence[BaseRoute], scope: Scope, prefix: str) -> tuple[str, bool] | None:
    partial: tuple[str, bool] | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        if isinstance(route, Mount):
            inner = _match_routes(route.routes, {**scope, **child}, prefix + route.path)
            if inner is None:
                inner = (prefix + route.path, match is Match.FULL)
            if inner[1]:
                return inner
            partial = partial or inner
            continue
        template = prefix + str(getattr(route, "path", scope["path"]))
        if match is Match.FULL:
            return template, True
        partial = partial or (template, False)
    return partial


def is_preflight(scope: Scope) -> bool:
    """A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``): it never
    carries credentials, so the gateway lets it through untouched for a CORS layer to answer."""
    if scope["method"] != "OPTIONS":
        return False
    names = {name for name, _ in scope["headers"]}
    return b"origin" in names and b"access-control-request-method" in names


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """``"GET /a/{b}"`` → ``("GET", "/a/{b}")``; a bare ``"/health"`` matches any method (``"*"``)."""
    if not isinstance(endpoint, str):
        raise TypeError(f"an endpoint is a string such as 'GET /items/{{item_id}}', not {endpoint!r}")
    method, _, template = endpoint.strip().partition(" ")
    if not template:
        return "*", method
    return method.upper(), template.strip()


class EndpointSet:
    """A set of endpoints written as ``"GET /listings/{listing_id}"`` or ``"/health"`` (any method)."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        if isinstance(endpoints, str):
            raise TypeError(f"expected a list of endpoint strings, not one string: {endpoints!r}")
        self.exact: set[str] = set()
        self.any_method: set[str] = set()
        self.names = list(endpoints)
        for endpoint in self.names:
            method, template = split_endpoint(endpoint)
            if method == "*":
                self.any_method.add(template)
            else:
                self.exact.add(f"{method} {template}")

    def __contains__(self, endpoint: object) -> bool:
        if not isinstance(endpoint, str):
            return False
        return endpoint in self.exact or endpoint.partition(" ")[2] in self.any_method


__all__ = ["METHODS", "UNMATCHED", "EndpointResolver", "EndpointSet", "is_preflight", "split_endpoint"]

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
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from starlette.routing import BaseRoute, Host, Match, Mount, Route, WebSocketRoute, compile_path

from gateway.types import Scope

#: Where the resolver keeps ``(resolver, Resolution)`` for a request, so every later layer reuses it.
SCOPE_KEY = "gateway.endpoint"

#: The endpoint of every request that matches no route or pattern.
UNMATCHED = "unmatched"

#: Methods a request may name an endpoint with; any other method (clients choose them) is unmatched.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "QUERY"})


class Resolution(NamedTuple):
    """What the resolver decided for one request.

    ``endpoint`` is ``"METHOD template"`` (or :data:`UNMATCHED`); ``known`` says a route or pattern
    serves both path and method (else the app answers 404 or 405); ``route`` is the route that does,
    when it is a plain ``Route`` at the top level, with its raw path parameters in ``params``, so a
    layer may hand the request straight to it without matching again (``None`` otherwise)."""

    endpoint: str
    known: bool
    route: Route | None = None
    params: dict[str, str] | None = None

    def child_scope(self, scope: Scope) -> dict[str, Any]:
        """What Starlette's router would add to ``scope`` for ``route`` (``endpoint``, ``path_params``)."""
        route = self.route
        if route is None or self.params is None:
            raise ValueError("no route to hand the request to")
        params = dict(scope.get("path_params", {}))
        for name, value in self.params.items():
            params[name] = route.param_convertors[name].convert(value)
        return {"endpoint": route.endpoint, "path_params": params}


_UNMATCHED = Resolution(UNMATCHED, False)


def walk(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str, BaseRoute]]:
    """Every ``(method, template, route)`` these routes serve, through ``Mount`` and ``Host``
    (``"*"``: any method, as a ``Mount`` or a route without methods serves). The one walk over a
    route table that every part of the gateway uses."""
    for route in routes:
        path = prefix + str(getattr(route, "path", ""))
        if isinstance(route, Mount):
            yield "*", path, route
            yield from walk(route.routes, path)
        elif isinstance(route, Host):
            yield from walk(route.routes, prefix)
        else:
            for method in getattr(route, "methods", None) or ("*",):
                yield method, path, route


class EndpointResolver:
    """Resolves requests to endpoints, from ``routes`` (a Starlette/FastAPI ``app.routes``) and/or
    ``patterns`` (``"GET /items/{item_id}"``, or ``"/health"`` for any method).

    Build one per app and give it to every layer that needs it (``resolver=``): the first to ask
    resolves the request and keeps the ``Resolution`` in ``scope["gateway.endpoint"]``; the others
    read it. A plain ``Route`` is matched by its compiled pattern alone; anything else (``Mount``,
    ``Host``) by Starlette's own ``matches``. Nothing is cached per path, so every new path (a new
    listing id) costs the same few microseconds."""

    def __init__(self, routes: Sequence[BaseRoute] = (), *, patterns: Iterable[str] = ()) -> None:
        self.routes = list(routes)
        if isinstance(patterns, str):
            raise TypeError("patterns must be a list of endpoint strings, not one string")
        self.patterns: list[tuple[str, re.Pattern[str], str]] = []
        for pattern in patterns:
            method, template = split_endpoint(pattern)
            regex, _, _ = compile_path(template)
            self.patterns.append((method, regex, template))
        #: The routes an HTTP request may match, in order: a plain ``Route`` as (path regex, methods,
        #: template, route), matched by its regex alone; ``Mount``, ``Host``, ... as (None, None, "",
        #: route), by Starlette. (WebSocket handshakes are matched against ``routes`` by Starlette.)
        self._table: list[tuple[re.Pattern[str] | None, frozenset[str] | None, str, BaseRoute]] = []
        for route in self.routes:
            if type(route) is Route:
                methods = frozenset(route.methods) if route.methods else None
                self._table.append((route.path_regex, methods, route.path, route))
            elif not isinstance(route, WebSocketRoute):  # a WebSocket route never serves an HTTP request
                self._table.append((None, None, "", route))

    @property
    def routed(self) -> bool:
        """Whether the resolver knows any templates (else every request is :data:`UNMATCHED`)."""
        return bool(self.routes or self.patterns)

    def resolution(self, scope: Scope) -> Resolution:
        """This request's ``Resolution`` (resolved once per request, kept in the scope with the
        resolver that made it: another app's resolver, a mounted one, resolves for itself)."""
        kept: tuple[EndpointResolver, Resolution] | None = scope.get(SCOPE_KEY)
        if kept is not None and kept[0] is self:
            return kept[1]
        found = self._match(scope)
        scope[SCOPE_KEY] = (self, found)
        return found

    def resolve(self, scope: Scope) -> str:
        """``"METHOD template"`` for this request."""
        return self.resolution(scope).endpoint

    def is_known(self, scope: Scope) -> bool:
        """Whether a route or pattern matched path and method (else the app answers 404 or 405)."""
        return self.resolution(scope).known

    def _match(self, scope: Scope) -> Resolution:
        """A route that matches path and method is "known"; one that matches only the path still
        names the endpoint (``"PUT /listings/{listing_id}"``), but the app will answer 405."""
        method = scope.get("method", "GET")
        if method not in METHODS:
            return _UNMATCHED
        named = "GET" if method == "HEAD" else method
        if scope["type"] == "websocket":  # a handshake is a GET; only WebSocket routes serve it
            found = _match_routes(self.routes, scope, "")
            if found is not None:
                return Resolution(f"GET {found[0]}", found[1])
            return self._match_patterns(scope, "GET")
        path = _route_path(scope)
        partial: Resolution | None = None
        for regex, methods, template, route in self._table:
            if regex is None:  # Mount, Host, ...: Starlette's own matching
                as_get = {**scope, "method": "GET"} if method == "HEAD" else scope
                found = _match_routes([route], as_get, "")
                if found is None:
                    continue
                if found[1]:
                    return Resolution(f"{named} {found[0]}", True)
                partial = partial or Resolution(f"{named} {found[0]}", False)
                continue
            match = regex.match(path)
            if match is None:
                continue
            if methods is None or named in methods:
                assert isinstance(route, Route)
                return Resolution(f"{named} {template}", True, route, match.groupdict())
            partial = partial or Resolution(f"{named} {template}", False)
        if partial is not None:
            return partial
        return self._match_patterns(scope, named)

    def _match_patterns(self, scope: Scope, named: str) -> Resolution:
        for wanted, regex, template in self.patterns:
            if wanted in ("*", named) and regex.match(scope["path"]):
                return Resolution(f"{named} {template}", True)
        return _UNMATCHED

    def allowed_methods(self, scope: Scope) -> list[str]:
        """Every method some route serves at this request's path (for a 405's ``Allow``)."""
        methods: set[str] = set()
        for _, _, route in walk(self.routes):
            if isinstance(route, Route) and route.methods and route.matches(scope)[0] is not Match.NONE:
                methods |= route.methods  # PARTIAL: the path matches, the method does not
        return sorted(methods)

    def serves_path(self, scope: Scope, path: str) -> bool:
        """Whether some route matches ``path`` (any method) in this request's context."""
        probe = {**scope, "path": path}
        return any(route.matches(probe)[0] is not Match.NONE for route in self.routes)

    def templates(self) -> set[tuple[str, str]]:
        """Every ``(method, template)`` the routes and patterns serve (``"*"``: any method)."""
        found = {(method, template) for method, template, _ in walk(self.routes)}
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


def resolver_for(
    resolver: EndpointResolver | None, routes: Sequence[BaseRoute], patterns: Iterable[str]
) -> EndpointResolver:
    """A middleware's resolver: the app's shared one (``resolver=``), or one of its own from ``routes``
    and ``patterns``; never both, which would be two descriptions of one app."""
    if resolver is None:
        return EndpointResolver(routes, patterns=patterns)
    if routes or patterns:
        raise ValueError("give resolver= or routes=/patterns=, not both")
    return resolver


def _route_path(scope: Scope) -> str:
    """The path a route matches against: ``path`` less the app's ``root_path`` when it starts with it
    (what Starlette's router does for every route since 0.33)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if not root_path or not path.startswith(root_path):
        return path
    if path == root_path:
        return ""
    return path[len(root_path) :] if path[len(root_path)] == "/" else path


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


__all__ = [
    "METHODS", "SCOPE_KEY", "UNMATCHED", "EndpointResolver", "EndpointSet", "Resolution", "is_preflight",
    "split_endpoint", "walk",
]  # fmt: skip

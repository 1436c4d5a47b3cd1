"""``EndpointResolver``: which endpoint a request is for, as ``"GET /listings/{listing_id}"``.

Rate limits and public-route rules are written against route templates, never raw paths, so
``/listings/1`` and ``/listings/2`` are one endpoint. For a Starlette or FastAPI app the templates
come from its routes; for any other ASGI app from configured patterns; otherwise the raw path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Match, Mount, compile_path

from gateway.types import Scope

SCOPE_KEY = "gateway.endpoint"
KNOWN_KEY = "gateway.endpoint_known"


class EndpointResolver:
    def __init__(
        self,
        routes: Sequence[BaseRoute] = (),
        *,
        patterns: Iterable[str] = (),
        cache_size: int = 4096,
    ) -> None:
        self.routes = list(routes)
        self.patterns: list[tuple[str, re.Pattern[str], str]] = []
        for pattern in patterns:
            method, template = split_endpoint(pattern)
            regex, _, _ = compile_path(template)
            self.patterns.append((method, regex, template))
        self.cache_size = cache_size
        self._cache: dict[tuple[str, str], tuple[str, bool]] = {}

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
        """Whether a route or pattern matched (else the endpoint is the raw path)."""
        self.resolve(scope)
        return bool(scope[KNOWN_KEY])

    def _match(self, scope: Scope) -> tuple[str, bool]:
        """A route that matches path and method is "known"; one that matches only the path still
        names the endpoint, but the app will answer 405, so it is not."""
        method, path = scope["method"], scope["path"]
        found = _match_routes(self.routes, scope, "")
        if found is not None:
            return f"{method} {found[0]}", found[1]
        for wanted, regex, template in self.patterns:
            if wanted in ("*", method) and regex.match(path):
                return f"{method} {template}", True
        return f"{method} {path}", False


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


def split_endpoint(endpoint: str) -> tuple[str, str]:
    """``"GET /a/{b}"`` → ``("GET", "/a/{b}")``; a bare ``"/health"`` matches any method (``"*"``)."""
    method, _, template = endpoint.strip().partition(" ")
    if not template:
        return "*", method
    return method.upper(), template.strip()


class EndpointSet:
    """A set of endpoints written as ``"GET /listings/{listing_id}"`` or ``"/health"`` (any method)."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.any_method: set[str] = set()
        for endpoint in endpoints:
            method, template = split_endpoint(endpoint)
            if method == "*":
                self.any_method.add(template)
            else:
                self.exact.add(f"{method} {template}")

    def __contains__(self, endpoint: object) -> bool:
        if not isinstance(endpoint, str):
            return False
        return endpoint in self.exact or endpoint.partition(" ")[2] in self.any_method


__all__ = ["EndpointResolver", "EndpointSet", "split_endpoint"]

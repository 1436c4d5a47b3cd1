"""``RouteShortcut``: the hot read path handed straight to its route.

By the time a request has passed the gateway, its endpoint is known (the gateway resolved it to
rate-limit it). For the routes named here the request then goes to the route itself, skipping
Starlette's exception layer (a ``Request`` object and a ``send`` wrapper per request) and the
router's walk over the routes before it. What an endpoint raises still reaches the app's error
handler (Starlette's outermost layer), so a bug is the same problem+json 500 as elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.routing import BaseRoute, Match, Route

from gateway.routing import EndpointResolver
from gateway.types import ASGIApp, Receive, Scope, Send


class RouteShortcut:
    """``endpoints`` (``"GET /listings/{listing_id}"``) go straight to their route in ``routes``."""

    def __init__(self, app: ASGIApp, *, routes: Sequence[BaseRoute], endpoints: Iterable[str]) -> None:
        self.app = app
        self.resolver = EndpointResolver(routes)
        wanted = set(endpoints)
        self.routes: dict[str, Route] = {}
        for route in routes:
            if isinstance(route, Route):
                for method in route.methods or ():
                    endpoint = f"{method} {route.path}"
                    if endpoint in wanted:
                        self.routes[endpoint] = route
        if missing := wanted - set(self.routes):
            raise ValueError(f"RouteShortcut: no route serves {sorted(missing)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            route = self.routes.get(self.resolver.resolve(scope))
            if route is not None:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    if "router" not in scope:  # as the router sets it (``request.url_for`` reads it)
                        router = getattr(scope.get("app"), "router", None)
                        if router is not None:
                            scope["router"] = router
                    await route.handle(scope, receive, send)
                    return
        await self.app(scope, receive, send)

"""``RouteShortcut``: the hot read path handed straight to its route.

By the time a request has passed the gateway, the app's one ``EndpointResolver`` has resolved it (to
rate-limit it) and kept the route it matched. For the endpoints named here the request then goes to
that route itself, without matching it again, skipping Starlette's exception layer (a ``Request``
object and a ``send`` wrapper per request) and the router's walk over the routes before it. What an
endpoint raises still reaches the app's error handler (Starlette's outermost layer), so a bug is the
same problem+json 500 as elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.routing import EndpointResolver
from gateway.types import ASGIApp, Receive, Scope, Send


class RouteShortcut:
    """``endpoints`` (``"GET /listings/{listing_id}"``) go straight to the route ``resolver`` matched."""

    def __init__(self, app: ASGIApp, *, resolver: EndpointResolver, endpoints: Iterable[str]) -> None:
        self.app = app
        self.resolver = resolver
        self.endpoints = frozenset(endpoints)
        served = {f"{method} {template}" for method, template in resolver.templates()}
        if missing := self.endpoints - served:
            raise ValueError(f"RouteShortcut: no route serves {sorted(missing)}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            resolution = self.resolver.resolution(scope)
            if resolution.route is not None and resolution.endpoint in self.endpoints:
                scope.update(resolution.child_scope(scope))
                if "router" not in scope:  # as the router sets it (``request.url_for`` reads it)
                    router = getattr(scope.get("app"), "router", None)
                    if router is not None:
                        scope["router"] = router
                await resolution.route.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)

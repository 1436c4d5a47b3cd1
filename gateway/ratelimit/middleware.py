"""``RateLimitMiddleware``: per-user, per-endpoint rate limiting in Redis for any ASGI app.

The budget key is ``rate_limit:{user_id}:{endpoint}``: the authenticated user's id (from
``scope["user"]``, set by an authentication middleware before this one) or ``ip:{client address}``,
and the route template with its method, so ``/listings/1`` and ``/listings/2`` share one budget.
Every limited response carries the IETF draft headers (``RateLimit-Policy``, ``RateLimit``) and the
older ``RateLimit-Limit``/``-Remaining``/``-Reset`` trio; a refused one gets 429, ``Retry-After`` and
a quota-exceeded problem body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute

from gateway.clientip import ClientAddress
from gateway.errors import RedisUnavailable
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.problem import ProblemResponse, answer
from gateway.ratelimit.fallback import Fallback
from gateway.ratelimit.headers import (
    add_rate_limit_headers,
    rate_limit_headers,
    raw_rate_limit_headers,
    too_many_requests,
)
from gateway.ratelimit.limits import Decision
from gateway.ratelimit.policy import Plan, Planner, RateLimits
from gateway.ratelimit.strategy import RateLimiter
from gateway.redis_keys import Keys
from gateway.routing import EndpointResolver, is_preflight, resolver_for
from gateway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.ratelimit")


async def run_limited(
    app: ASGIApp, plan: Plan, decision: Decision, scope: Scope, receive: Receive, send: Send, events: GatewayEvents
) -> None:
    """Answer 429 for a refused decision; otherwise run the app with the rate-limit headers added. A
    shadow policy's refusal is reported and logged, and the request goes on (with the headers a
    refusal would carry, but no ``Retry-After``)."""
    policy = plan.policy
    events.rate_limit_decision(policy.name, decision, shadow=policy.shadow)
    websocket = scope["type"] == "websocket"
    if not decision.admitted:
        if not policy.shadow:
            await answer(too_many_requests(policy, decision), scope, receive, send)
            return
        method = scope.get("method", "GET")
        logger.warning("rate limit (shadow) %s would refuse %s %s", policy.name, method, scope["path"][:200])
        decision = decision._replace(admitted=True)  # for the headers: what it would say, no Retry-After
    if websocket:  # the headers go on the accept (ASGI lets a websocket.accept carry headers)
        headers = raw_rate_limit_headers(policy, decision)

        async def send_on_accept(message: Message) -> None:
            if message["type"] == "websocket.accept":
                message.setdefault("headers", []).extend(headers)
            await send(message)

        await app(scope, receive, send_on_accept)
        return

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            raw = message.setdefault("headers", [])
            for name, _ in raw:
                if name == b"ratelimit-remaining":  # the app limited it too
                    add_rate_limit_headers(MutableHeaders(scope=message), rate_limit_headers(policy, decision))
                    break
            else:
                raw += raw_rate_limit_headers(policy, decision)
        await send(message)

    await app(scope, receive, send_with_headers)


def user_id_of(scope: Scope) -> str | None:
    """The authenticated user's id from ``scope["user"]`` (any authentication middleware), or None."""
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.identity)
    return None


class RateLimitMiddleware:
    """Rate limiting with ``limiter`` (a ``RateLimiter``) by ``limits`` (a ``RateLimits``: default, overrides,
    exemptions, a per-request chooser, what to do while Redis is away). ``routes`` (a Starlette/FastAPI app's
    ``app.routes``) or ``patterns`` (``"GET /items/{item_id}"``) name the route templates (or ``resolver``, the
    app's one ``EndpointResolver``); limits declared on routes with ``@limit(...)`` are found through ``routes``.
    ``keys`` puts a prefix before the keys; ``client_address`` says whose ``X-Forwarded-For`` to believe. Place it
    after the authentication middleware, which sets ``scope["user"]`` (or use ``GatewayMiddleware`` for both in one
    round trip). ``events`` hears every decision. Responses get the rate-limit headers; a refusal is a 429 problem."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        limits: RateLimits | None = None,
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        resolver: EndpointResolver | None = None,
        keys: Keys | None = None,
        client_address: ClientAddress | None = None,
        events: GatewayEvents | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        rules = limits or RateLimits()
        self.planner = Planner(
            rules,
            resolver=resolver_for(resolver, routes, patterns),
            keys=keys or Keys(),
            client_address=client_address or ClientAddress(),
        )
        self.fallback = Fallback(rules.on_redis_error)
        self.events = events or NO_EVENTS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or (kind == "http" and is_preflight(scope)):
            await self.app(scope, receive, send)
            return
        plan = self.planner.plan(scope, user_id_of(scope))
        if plan is None:
            await self.app(scope, receive, send)
            return
        decision: Decision | ProblemResponse | None
        try:
            decision = await self.limiter.hit(plan.key, plan.policy.limits, plan.policy.cost)
        except RedisUnavailable as exc:
            decision = self.fallback.decide(plan, exc)
        if isinstance(decision, ProblemResponse):
            await answer(decision, scope, receive, send)
        elif decision is None:
            await self.app(scope, receive, send)
        else:
            await run_limited(self.app, plan, decision, scope, receive, send, self.events)

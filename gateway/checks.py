"""The gateway's checks for one request in one Redis round trip, or none: ``RequestChecks`` (the
pipeline) and ``GatewayMiddleware`` (its middleware).

1. **Authenticate** (local work, no Redis): the verified token, or an anonymous caller on a public
   endpoint (``gateway.auth.Authenticator``).
2. **Plan** the rate limit: which policy and key the request counts against
   (``gateway.ratelimit.Planner``).
3. **One Redis step**: the fused script ``lua/gateway.lua`` checks the token for revocation
   (``TokenBlacklist``'s check) and counts the hit (``RateLimiter``'s algorithm); a refused token is
   not counted. A request with only one of the two runs that one's script.

Step 3 is skipped when this process already knows both answers: the token is in the revocation view
(``gateway.revocation_view``: found valid, nothing it depends on changed since, as Redis pushes) and
the rate limit can be decided from budget reserved ahead or a refusal still in force
(``gateway.ratelimit.reservations``).

``AuthMiddleware`` and ``RateLimitMiddleware`` remain usable alone; this is the composition that
costs one round trip, using only their parts' public faces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from starlette.routing import BaseRoute

from gateway.auth import Authenticator, AuthFailure, AuthRules, check_blacklist
from gateway.blacklist import TokenBlacklist, Verdict
from gateway.clientip import ClientAddress
from gateway.connection import require_client
from gateway.errors import RedisUnavailable
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.problem import ProblemResponse, answer
from gateway.ratelimit.fallback import Fallback
from gateway.ratelimit.limits import Decision
from gateway.ratelimit.middleware import run_limited
from gateway.ratelimit.policy import Plan, Planner, RateLimits
from gateway.ratelimit.reservations import Reservations
from gateway.ratelimit.strategy import RateLimiter, limit_args, reservation_of
from gateway.redis_keys import Keys
from gateway.revocation_view import RevocationView
from gateway.routing import EndpointResolver, is_preflight, resolver_for
from gateway.scripts import ScriptSet
from gateway.streams import StreamGuard, serve_stream, serve_websocket
from gateway.tokens import Claims, TokenVerifier
from gateway.types import ASGIApp, Receive, Scope, Send


class Outcome(NamedTuple):
    """What the checks found: the caller's claims (None: anonymous), and the rate-limit plan and
    decision (None: not limited, or no limit while Redis is away)."""

    claims: Claims | None
    plan: Plan | None
    decision: Decision | None


class RequestChecks:
    """The pipeline (see the module docstring). ``check`` returns an ``Outcome``, or the problem
    response that refuses the request (401, 429's are left to the caller, 503).

    With ``view`` (a ``RevocationView``) a token Redis already found valid is admitted without
    asking again, until a key its check read changes; with ``reservations`` a rate-limit key spends
    budget taken ahead of need and repeats a refusal until its wait is over. Together a warm request
    costs no round trip; whenever either cannot decide, the request takes the one-trip path."""

    def __init__(
        self,
        *,
        authenticator: Authenticator,
        blacklist: TokenBlacklist | None,
        limiter: RateLimiter,
        planner: Planner,
        fallback: Fallback,
        view: RevocationView | None = None,
        reservations: Reservations | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.blacklist = blacklist
        self.limiter = limiter
        self.planner = planner
        self.fallback = fallback
        self.view = view
        self.reservations = reservations
        self._scripts = ScriptSet("gateway")

    async def check(self, scope: Scope) -> Outcome | ProblemResponse:
        """Raises ``AuthFailure`` for a refused token."""
        authenticator = self.authenticator
        claims = await authenticator.authenticate(scope)
        authenticator.set_user(scope, claims)  # a policy chooser may read scope["user"]
        plan = self.planner.plan(scope, claims["sub"] if claims else None)
        blacklist = self.blacklist
        revocable = claims is not None and blacklist is not None  # a token whose revocation is checked
        view = self.view
        checked = not revocable or (view is not None and view.admits(claims))  # type: ignore[arg-type]
        if checked and (plan is None or (local := self._local(plan)) is not None):
            return Outcome(claims, plan, None if plan is None else local)
        decision: Decision | ProblemResponse | None = None
        try:
            if revocable:
                # A round trip is needed: it checks the token too, even one the view admitted (at no
                # extra cost: one script), so a revocation still on its way to this host stops it here.
                assert claims is not None and blacklist is not None
                mark = view.mark() if view is not None else 0
                if plan is None:
                    verdict = await blacklist.verdict(claims)
                else:
                    verdict, decision = await self.revocation_and_hit(blacklist, claims, plan)
                authenticator.apply(verdict)
                if view is not None:
                    view.remember(claims, mark)
            elif plan is not None:
                decision = await self._hit(plan)
        except RedisUnavailable as exc:
            if not checked:
                authenticator.unchecked(exc)  # raises AuthFailure unless failing open
            decision = None if plan is None else self.fallback.decide(plan, exc)
        if isinstance(decision, ProblemResponse):
            return decision
        return Outcome(claims, plan, decision)

    def _local(self, plan: Plan) -> Decision | None:
        """The decision this process can make alone: budget it holds, or a refusal still in force."""
        reservations = self.reservations
        if reservations is None:
            return None
        policy = plan.policy
        return reservations.take(plan.key, policy.limits, policy.cost) or reservations.refused(
            plan.key, policy.limits, policy.cost
        )

    async def _hit(self, plan: Plan) -> Decision:
        policy = plan.policy
        if self.reservations is None:
            return await self.limiter.hit(plan.key, policy.limits, policy.cost)
        return await self.reservations.hit(self.limiter, plan.key, policy.limits, policy.cost)

    async def revocation_and_hit(
        self, blacklist: TokenBlacklist, claims: Claims, plan: Plan
    ) -> tuple[Verdict, Decision | None]:
        """The fused step: one script, one round trip. A refused token is not counted (no decision)."""
        limiter, policy, reservations = self.limiter, plan.policy, self.reservations
        scripts = self._scripts.bind(require_client(limiter.redis), limiter.breaker.events)
        sent = reservations.clock() if reservations is not None else 0.0
        # Units taken ahead are spent only by requests the view admits: without a live view (none given,
        # its channel down, or off on Cluster/Sentinel) every token request comes here, so take none.
        want = policy.cost
        if reservations is not None and self.view is not None and self.view.live:
            want = reservations.want(plan.key, policy.limits, policy.cost)
        keys = [*blacklist.check_keys(claims), plan.key]
        args: list[Any] = [*blacklist.check_args(claims), *limit_args(policy.limits, policy.cost, want)]
        reply = await limiter.breaker.call(lambda: scripts["gateway"](keys=keys, args=args))
        verdict = Verdict(int(reply[0]))
        if verdict is not Verdict.VALID:
            if reservations is not None and want > policy.cost:
                reservations.abandon(plan.key)  # nothing was taken: another trip may reserve
            return verdict, None
        reserved = reservation_of(reply[1:], policy.limits)
        if reservations is None:
            return verdict, reserved[0]
        return verdict, reservations.record(plan.key, policy.limits, policy.cost, want, reserved, sent)


class GatewayMiddleware:
    """Authentication (``auth``: what is public, what ignores tokens, fail-open) and rate limiting
    (``limits``) for any ASGI app, in one Redis round trip per request. ``routes`` (a
    Starlette/FastAPI app's ``app.routes``) or ``patterns`` name the route templates both refer to (or
    ``resolver``, the app's one ``EndpointResolver`` shared with its other layers);
    ``keys``, ``client_address`` and ``events`` as for the parts. ``verifier`` checks each token's
    signature and claims, ``blacklist`` its revocation (``None``: not checked), ``limiter`` counts
    the budgets. CORS preflights pass through.

    A WebSocket handshake is checked as a ``GET`` of its route (``gateway.streams``): refused before
    accept with the answer HTTP would get. With ``streams`` (a ``StreamGuard``), every WebSocket and
    SSE stream that carries a token is closed once the token stops being valid.

    ``view`` (a ``RevocationView`` on ``blacklist``) and ``reservations`` (``Reservations``) let a warm
    request pass with no Redis round trip at all (``RequestChecks``); without them every request
    takes exactly one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        blacklist: TokenBlacklist | None,
        limiter: RateLimiter,
        auth: AuthRules | None = None,
        limits: RateLimits | None = None,
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        resolver: EndpointResolver | None = None,
        keys: Keys | None = None,
        client_address: ClientAddress | None = None,
        events: GatewayEvents | None = None,
        streams: StreamGuard | None = None,
        view: RevocationView | None = None,
        reservations: Reservations | None = None,
    ) -> None:
        check_blacklist(verifier, blacklist)
        if view is not None and view.blacklist is not blacklist:
            raise ValueError("the revocation view must be built on the gateway's blacklist")
        resolver = resolver_for(resolver, routes, patterns)
        rules = limits or RateLimits()
        self.app = app
        self.events = events or NO_EVENTS
        self.streams = streams
        self.checks = RequestChecks(
            authenticator=Authenticator(verifier, auth or AuthRules(), resolver),
            blacklist=blacklist,
            limiter=limiter,
            planner=Planner(
                rules, resolver=resolver, keys=keys or Keys(), client_address=client_address or ClientAddress()
            ),
            fallback=Fallback(rules.on_redis_error),
            view=view,
            reservations=reservations,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if (kind != "http" and kind != "websocket") or (kind == "http" and is_preflight(scope)):
            await self.app(scope, receive, send)
            return
        try:
            outcome = await self.checks.check(scope)
        except AuthFailure as failure:
            self.events.token_rejected(failure.reason)
            await answer(failure.response, scope, receive, send)
            return
        if isinstance(outcome, ProblemResponse):
            await answer(outcome, scope, receive, send)
            return
        app = self.app
        claims, guard = outcome.claims, self.streams
        if kind == "websocket":

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                await serve_websocket(self.app, scope, receive, send, claims=claims, guard=guard)

        elif guard is not None and claims is not None and scope["method"] == "GET":  # SSE is a GET

            async def app(scope: Scope, receive: Receive, send: Send) -> None:
                await serve_stream(self.app, scope, receive, send, claims=claims, guard=guard)

        if outcome.plan is None or outcome.decision is None:
            await app(scope, receive, send)
        else:
            await run_limited(app, outcome.plan, outcome.decision, scope, receive, send, self.events)

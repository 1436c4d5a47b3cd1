"""``GatewayMiddleware``: authentication, the blacklist check and rate limiting composed so that
together they cost one Redis round trip per request (one Lua script does both the revocation check
and the rate-limit hit). ``AuthMiddleware`` and ``RateLimitMiddleware`` still work alone."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from starlette.routing import BaseRoute

from gateway.auth import AuthFailure, AuthMiddleware
from gateway.blacklist import TokenBlacklist
from gateway.breaker import RedisUnavailable
from gateway.clientip import ClientAddress
from gateway.keys import Keys
from gateway.limiter import Decision, RateLimiter
from gateway.limits import Limit
from gateway.problem import ProblemResponse
from gateway.ratelimit import OnRedisError, Plan, Policy, PolicyChooser, RateLimitMiddleware
from gateway.routing import EndpointResolver, is_preflight
from gateway.tokens import TokenVerifier
from gateway.types import ASGIApp, Receive, Scope, Send


class GatewayMiddleware:
    """Takes the options of both middleware (see their docstrings); they share one endpoint resolver."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        blacklist: TokenBlacklist,
        limiter: RateLimiter,
        public: Iterable[str] | Callable[[Scope], bool] = (),
        ignore_token: Iterable[str] = (),
        default: str | Sequence[Limit] | Policy = "100/hour",
        overrides: Mapping[str, str | Policy] | None = None,
        exempt: Iterable[str] = (),
        policy: PolicyChooser | None = None,
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        client_address: ClientAddress | None = None,
        keys: Keys | None = None,
        fail_open: bool = False,
        on_redis_error: OnRedisError = "local",
        realm: str = "kapi",
        on_reject: Callable[[str], None] | None = None,
        on_decision: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.app = app
        resolver = EndpointResolver(routes, patterns=patterns)
        self.auth = AuthMiddleware(
            app,
            verifier=verifier,
            blacklist=blacklist,
            public=public,
            ignore_token=ignore_token,
            resolver=resolver,
            fail_open=fail_open,
            realm=realm,
            on_reject=on_reject,
        )
        self.rate = RateLimitMiddleware(
            app,
            limiter=limiter,
            default=default,
            overrides=overrides,
            exempt=exempt,
            policy=policy,
            resolver=resolver,
            client_address=client_address,
            keys=keys,
            on_redis_error=on_redis_error,
            on_decision=on_decision,
        )
        self.blacklist = blacklist
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_preflight(scope):
            await self.app(scope, receive, send)
            return
        try:
            claims = self.auth.authenticate(scope)
            self.auth.set_user(scope, claims)  # a policy chooser may read scope["user"]
            plan = self.rate.plan(scope, claims["sub"] if claims else None)
            decision: Decision | ProblemResponse | None = None
            if claims is None:
                if plan is not None:
                    decision = await self._hit(plan)
            elif plan is None:
                await self.auth.check_revocation(claims)
            else:
                try:
                    verdict, decision = await self.limiter.hit_checked(
                        self.blacklist.check_keys(claims),
                        self.blacklist.check_args(claims),
                        plan.key,
                        plan.policy.limits,
                    )
                except RedisUnavailable as exc:
                    self.auth.redis_unavailable(exc)  # raises AuthFailure unless failing open
                    decision = self.rate.fallback(plan, exc)
                else:
                    self.auth.apply_verdict(verdict)
        except AuthFailure as failure:
            if self.auth.on_reject is not None:
                self.auth.on_reject(failure.reason)
            await failure.response(scope, receive, send)
            return
        if isinstance(decision, ProblemResponse):
            await decision(scope, receive, send)
            return
        await self.rate.respond(plan, decision, scope, receive, send)

    async def _hit(self, plan: Plan) -> Decision | ProblemResponse | None:
        try:
            return await self.limiter.hit(plan.key, plan.policy.limits)
        except RedisUnavailable as exc:
            return self.rate.fallback(plan, exc)

"""``RateLimitMiddleware``: per-user, per-endpoint rate limiting in Redis for any ASGI app.

The budget key is ``rate_limit:{user_id}:{endpoint}``: the authenticated user's id (from
``scope["user"]``, set by an authentication middleware before this one) or ``ip:{client address}``,
and the route template with its method, so ``/listings/1`` and ``/listings/2`` share one budget.
Every limited response carries the IETF draft headers (``RateLimit-Policy``, ``RateLimit``) and the
older ``RateLimit-Limit``/``-Remaining``/``-Reset`` trio; a refused one gets 429, ``Retry-After`` and
a quota-exceeded problem body.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute

from gateway.breaker import RedisUnavailable
from gateway.clientip import ClientAddress
from gateway.keys import Keys
from gateway.limiter import Decision, LocalLimiter, RateLimiter
from gateway.limits import Limit, parse_limits
from gateway.problem import ProblemResponse
from gateway.routing import EndpointResolver, EndpointSet, is_preflight, split_endpoint
from gateway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.ratelimit")

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
OnRedisError = Literal["local", "open", "closed"]


class Policy(NamedTuple):
    """A named set of limits; ``by="ip"`` counts per client address even for signed-in users."""

    name: str
    limits: tuple[Limit, ...]
    by: Literal["user", "ip"] = "user"

    @classmethod
    def of(cls, name: str, limits: str | Sequence[Limit], by: Literal["user", "ip"] = "user") -> Policy:
        return cls(name, parse_limits(limits) if isinstance(limits, str) else tuple(limits), by)

    def item_names(self) -> list[str]:
        """One structured-field item name per limit: the policy's name, or name-<window>s for several."""
        if len(self.limits) == 1:
            return [self.name]
        return [f"{self.name}-{limit.window}s" for limit in self.limits]


class Plan(NamedTuple):
    """What one request is counted against."""

    policy: Policy
    key: str


#: ``policy(scope, user_id_or_None, endpoint)`` → a Policy for this request, or None for the default.
PolicyChooser = Callable[[Scope, "str | None", str], "Policy | None"]


def _quote(name: str) -> str:
    return name.replace("\\", "").replace('"', "")


@functools.cache
def _policy_field(policy: Policy) -> tuple[str, tuple[str, ...]]:
    """The static parts of a policy's headers, built once per policy."""
    names = tuple(_quote(n) for n in policy.item_names())
    value = ", ".join(f'"{n}";q={limit.amount};w={limit.window}' for n, limit in zip(names, policy.limits, strict=True))
    return value, names


def rate_limit_headers(policy: Policy, decision: Decision) -> list[tuple[str, str]]:
    policy_value, names = _policy_field(policy)
    states = decision.states
    if len(states) == 1:
        tightest = states[0]
        current = f'"{names[0]}";r={tightest.remaining};t={tightest.reset}'
    else:
        tightest = min(states, key=lambda s: (s.remaining, -s.reset))
        current = ", ".join(f'"{n}";r={s.remaining};t={s.reset}' for n, s in zip(names, states, strict=True))
    headers = [
        ("RateLimit-Policy", policy_value),
        ("RateLimit", current),
        ("RateLimit-Limit", str(tightest.limit.amount)),
        ("RateLimit-Remaining", str(tightest.remaining)),
        ("RateLimit-Reset", str(tightest.reset)),
    ]
    if not decision.admitted:
        headers.append(("Retry-After", str(decision.retry_after)))
    return headers


_TRIO = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def add_rate_limit_headers(response: MutableHeaders, headers: list[tuple[str, str]]) -> None:
    """Add our headers to a response. If the app already limited it under another policy (say, per
    phone number), both policies are listed, and the single-valued trio keeps the tighter one."""
    values = dict(headers)
    existing = response.get("ratelimit-remaining")
    ours_tighter = existing is None or (existing.isdigit() and int(values["RateLimit-Remaining"]) < int(existing))
    for name, value in headers:
        if name in _TRIO:
            if ours_tighter:
                response[name] = value
        elif name in response and name != "Retry-After":
            response[name] = f"{response[name]}, {value}"
        else:
            response[name] = value


def too_many_requests(policy: Policy, decision: Decision) -> ProblemResponse:
    names = policy.item_names()
    violated = [name for name, state in zip(names, decision.states, strict=True) if state.remaining == 0]
    extra: dict[str, Any] = {"violated-policies": violated}
    return ProblemResponse(
        429,
        f"Rate limit exceeded; retry in {decision.retry_after} s.",
        title="Too Many Requests",
        type=QUOTA_EXCEEDED,
        headers=dict(rate_limit_headers(policy, decision)),
        **extra,
    )


class RateLimitMiddleware:
    """Options:

    - ``default``: the limits for every endpoint (``"100/hour"``, ``"10/second;100/hour"``);
    - ``overrides``: per endpoint (``{"POST /auth/login/phone": Policy.of("login-ip", "10/minute", by="ip")}``);
    - ``exempt``: endpoints never limited (``["/health", "/metrics"]``);
    - ``policy``: a callable choosing limits per request (e.g. from a ``tier`` claim in
      ``scope["user"].claims``) where no override applies; None means the default;
    - ``routes`` (a Starlette/FastAPI app's ``app.routes``) or ``patterns`` name the route templates;
    - ``on_redis_error``: ``"local"`` (an approximate per-process limiter), ``"open"`` (no limit) or
      ``"closed"`` (503) while Redis cannot answer.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        default: str | Sequence[Limit] | Policy = "100/hour",
        overrides: Mapping[str, str | Policy] | None = None,
        exempt: Iterable[str] = (),
        policy: PolicyChooser | None = None,
        routes: Sequence[BaseRoute] = (),
        patterns: Iterable[str] = (),
        resolver: EndpointResolver | None = None,
        client_address: ClientAddress | None = None,
        keys: Keys | None = None,
        on_redis_error: OnRedisError = "local",
        on_decision: Callable[[str, bool], None] | None = None,
    ) -> None:
        if on_redis_error not in ("local", "open", "closed"):
            raise ValueError("on_redis_error must be 'local', 'open' or 'closed'")
        self.app = app
        self.limiter = limiter
        self.default = default if isinstance(default, Policy) else Policy.of("default", default)
        self.resolver = resolver or EndpointResolver(routes, patterns=patterns)
        self.resolver.check("overrides", list(overrides or {}))
        self.resolver.check("exempt", exempt)
        self.overrides: dict[str, Policy] = {}
        for endpoint, value in (overrides or {}).items():
            method, template = split_endpoint(endpoint)
            name = f"{method} {template}"
            self.overrides[name] = value if isinstance(value, Policy) else Policy.of(name, value)
        self.exempt = EndpointSet(exempt)
        self.choose = policy
        self.client_address = client_address or ClientAddress()
        self.keys = keys or Keys()
        self.on_redis_error = on_redis_error
        self.on_decision = on_decision
        self.local = LocalLimiter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_preflight(scope):
            await self.app(scope, receive, send)
            return
        plan = self.plan(scope, _user_id(scope))
        if plan is None:
            await self.app(scope, receive, send)
            return
        decision: Decision | None
        try:
            decision = await self.limiter.hit(plan.key, plan.policy.limits)
        except RedisUnavailable as exc:
            outcome = self.fallback(plan, exc)
            if isinstance(outcome, ProblemResponse):
                await outcome(scope, receive, send)
                return
            decision = outcome
        await self.respond(plan, decision, scope, receive, send)

    def plan(self, scope: Scope, user_id: str | None) -> Plan | None:
        """Which policy and key this request counts against; None when exempt."""
        endpoint = self.resolver.resolve(scope)
        if endpoint in self.exempt:
            return None
        policy = self.overrides.get(endpoint)
        if policy is None and self.choose is not None:
            policy = self.choose(scope, user_id, endpoint)
        policy = policy or self.default
        if user_id and policy.by == "user":
            return Plan(policy, self.keys.user("rate_limit", user_id, endpoint))
        address = Keys.client("ip", self.client_address(scope))
        return Plan(policy, self.keys.owned("rate_limit", address, endpoint))

    def fallback(self, plan: Plan, exc: Exception) -> Decision | ProblemResponse | None:
        """While Redis cannot answer: the local limiter, no limit, or 503."""
        if self.on_redis_error == "local":
            return self.local.hit(plan.key, plan.policy.limits)
        if self.on_redis_error == "open":
            return None
        logger.warning("rate limit unavailable (%s); refusing", exc)
        return ProblemResponse(503, "Rate limiting is unavailable; try again shortly.", headers={"Retry-After": "2"})

    async def respond(
        self, plan: Plan | None, decision: Decision | None, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Run the app with the rate-limit headers added, or answer 429."""
        if plan is None or decision is None:
            await self.app(scope, receive, send)
            return
        if self.on_decision is not None:
            self.on_decision(plan.policy.name, decision.admitted)
        if not decision.admitted:
            await too_many_requests(plan.policy, decision)(scope, receive, send)
            return
        headers = rate_limit_headers(plan.policy, decision)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = message.setdefault("headers", [])
                if any(name == b"ratelimit-remaining" for name, _ in raw):
                    add_rate_limit_headers(MutableHeaders(scope=message), headers)  # the app limited it too
                else:
                    raw.extend((name.lower().encode(), value.encode()) for name, value in headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _user_id(scope: Scope) -> str | None:
    user = scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.identity)
    return None

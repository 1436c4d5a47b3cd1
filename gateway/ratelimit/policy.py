"""Which limits a request counts against: ``Policy`` (named limits), the ``limit`` decorator that
declares a route's own limits next to the route, and ``RateLimits``, the rules that turn a request
into a ``Plan`` (a policy and a key)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from starlette.routing import BaseRoute

from gateway.clientip import ClientAddress
from gateway.ratelimit.limits import Limit, parse_limits
from gateway.redis_keys import Keys
from gateway.routing import EndpointResolver, EndpointSet, split_endpoint, walk
from gateway.types import Scope

OnRedisError = Literal["local", "open", "closed"]
By = Literal["user", "ip"]
F = TypeVar("F", bound=Callable[..., Any])

#: Where the ``limit`` decorator leaves its policy on an endpoint.
ROUTE_POLICY = "__kapi_rate_limit__"


class Policy(NamedTuple):
    """A named set of limits. ``by="ip"`` counts per client address even for signed-in users;
    ``cost`` is how many units one request takes (a search may cost 2, a create 5); a ``shadow``
    policy decides, reports and sends its headers, but refuses nothing (how a new limit is rolled
    out safely)."""

    name: str
    limits: tuple[Limit, ...]
    by: By = "user"
    cost: int = 1
    shadow: bool = False

    @classmethod
    def of(
        cls, name: str, limits: str | Sequence[Limit], by: By = "user", *, cost: int = 1, shadow: bool = False
    ) -> Policy:
        """A policy from ``limits`` as text (``"10/second;100/hour"``) or ``Limit`` objects.
        ``ValueError`` when the text does not parse or ``cost`` is below 1 or above a limit's amount
        (such a request could never pass)."""
        parsed = parse_limits(limits) if isinstance(limits, str) else tuple(limits)
        if cost < 1 or any(cost > limit.amount for limit in parsed):
            raise ValueError(f"policy {name!r}: a cost of {cost} must be at least 1 and fit every limit")
        return cls(name, parsed, by, cost, shadow)

    def item_names(self) -> list[str]:
        """One structured-field item name per limit: the policy's name, or name-<window>s for several."""
        if len(self.limits) == 1:
            return [self.name]
        return [f"{self.name}-{limit.window}s" for limit in self.limits]


class Plan(NamedTuple):
    """What one request is counted against: a policy, and the key of its budget."""

    policy: Policy
    key: str


#: ``policy(scope, user_id_or_None, endpoint)`` → a Policy for this request, or None for the default.
PolicyChooser = Callable[[Scope, "str | None", str], "Policy | None"]


def limit(
    limits: str | Sequence[Limit], *, name: str | None = None, by: By = "user", cost: int = 1, shadow: bool = False
) -> Callable[[F], F]:
    """Declare a route's own limits next to the route (like slowapi's ``@limiter.limit``), for
    Starlette and FastAPI endpoints::

        @app.post("/listings")
        @limit("5/minute")
        async def create_listing(...): ...

    The rate-limit middleware finds it through the app's routes at start-up and enforces it in its
    one Redis round trip, keyed by the route template; the policy is named after the endpoint
    (``POST /listings``) unless ``name`` is given. ``cost`` and ``shadow`` as for ``Policy``.
    """
    checked = Policy.of(name or "route", limits, by, cost=cost, shadow=shadow)

    def mark(endpoint: F) -> F:
        setattr(endpoint, ROUTE_POLICY, (name, checked))
        return endpoint

    return mark


def declared_limits(routes: Sequence[BaseRoute]) -> dict[str, Policy]:
    """The policies declared with ``limit`` on the endpoints of these routes, by endpoint."""
    found: dict[str, Policy] = {}
    for method, path, route in walk(routes):
        declared = getattr(getattr(route, "endpoint", None), ROUTE_POLICY, None)
        if declared is None or method == "HEAD":  # HEAD counts against its GET route's budget
            continue
        name, policy = declared
        endpoint = f"{'GET' if method == '*' else method} {path}"
        found[endpoint] = policy._replace(name=name or endpoint)
    return found


@dataclass(frozen=True)
class RateLimits:
    """The rate-limit rules, in one place:

    - ``default``: the limits for every endpoint (``"100/hour"``, ``"10/second;100/hour"``);
    - ``overrides``: per endpoint (``{"POST /login": Policy.of("login-ip", "10/minute", by="ip")}``);
      routes may also declare their own with ``@limit(...)`` (an override wins over a declaration);
    - ``exempt``: endpoints never limited (``["/health", "/metrics"]``);
    - ``choose``: a callable choosing limits per request (e.g. from a ``tier`` claim in
      ``scope["user"].claims``) where no override applies; None means the default;
    - ``on_redis_error``: ``"local"`` (an approximate per-process limiter), ``"open"`` (no limit) or
      ``"closed"`` (503) while Redis cannot answer;
    - ``shadow``: every policy decides and reports but refuses nothing (a policy can also be
      ``shadow`` on its own).
    """

    default: str | Sequence[Limit] | Policy = "100/hour"
    overrides: Mapping[str, str | Policy] = field(default_factory=dict)
    exempt: Iterable[str] = ()
    choose: PolicyChooser | None = None
    on_redis_error: OnRedisError = "local"
    shadow: bool = False

    def __post_init__(self) -> None:
        if self.on_redis_error not in ("local", "open", "closed"):
            raise ValueError("on_redis_error must be 'local', 'open' or 'closed'")
        if isinstance(self.exempt, str):
            raise TypeError(f"exempt must be a list of endpoint strings, not one string: {self.exempt!r}")


class Planner:
    """``RateLimits`` compiled against an app's routes: which policy and key a request counts against."""

    def __init__(
        self, rules: RateLimits, *, resolver: EndpointResolver, keys: Keys, client_address: ClientAddress
    ) -> None:
        self.rules = rules
        self.resolver = resolver
        self.keys = keys
        self.client_address = client_address
        default = rules.default
        self.default = default if isinstance(default, Policy) else Policy.of("default", default)
        resolver.check("overrides", list(rules.overrides))
        resolver.check("exempt", rules.exempt)
        self.overrides: dict[str, Policy] = declared_limits(resolver.routes)
        self.any_method: dict[str, Policy] = {}  # "/orders/": every method of the template
        for endpoint, value in rules.overrides.items():
            method, template = split_endpoint(endpoint)
            name = f"{method} {template}" if method != "*" else template
            policy = value if isinstance(value, Policy) else Policy.of(name, value)
            if method == "*":
                self.any_method[template] = policy
            else:
                self.overrides[name] = policy
        self.exempt = EndpointSet(rules.exempt)

    def plan(self, scope: Scope, user_id: str | None) -> Plan | None:
        """Which policy and key this request counts against; None when exempt."""
        endpoint = self.resolver.resolve(scope)
        if endpoint in self.exempt:
            return None
        policy = self.overrides.get(endpoint)
        if policy is None and self.any_method:
            policy = self.any_method.get(endpoint.partition(" ")[2])
        if policy is None and self.rules.choose is not None:
            policy = self.rules.choose(scope, user_id, endpoint)
        policy = policy or self.default
        if self.rules.shadow and not policy.shadow:
            policy = policy._replace(shadow=True)
        if user_id and policy.by == "user":
            return Plan(policy, self.keys.user("rate_limit", user_id, endpoint))
        address = Keys.client("ip", self.client_address(scope))
        return Plan(policy, self.keys.owned("rate_limit", address, endpoint))

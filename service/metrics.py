"""``GET /metrics`` (Prometheus text format) and what feeds it.

Per-request counts and timings are added up in plain dictionaries and handed to prometheus-client
once a second and before every scrape (an increment there takes a lock, and several per request
cost measurably on the hot path); a scrape always sees this process's counts up to that moment. A
histogram's pending observations go in with one increment per bucket (``_add_to_histogram``, this
module's one use of prometheus-client's internals, pinned and contract-tested).

Under several worker processes, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory shared by the
workers (the run command does): prometheus-client then keeps each worker's values in files there and
``/metrics`` sums them, whichever worker answers. Labels are bounded: route templates, never raw
paths or user ids.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import EndpointResolver, GatewayEvents
from gateway.boundary import CLIENT_CLOSED_REQUEST
from gateway.ratelimit import Decision, LimitState
from gateway.requestid import begin_request, end_request
from gateway.types import ASGIApp, Message, Receive, Scope, Send
from service.accesslog import AccessLog

_STATES = ("closed", "open", "half_open")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_REDIS_BUCKETS = (0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_LATENCY_BUCKETS_INF = (*_LATENCY_BUCKETS, float("inf"))
_REDIS_BUCKETS_INF = (*_REDIS_BUCKETS, float("inf"))


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class Metrics(GatewayEvents):
    """Every metric the service exports, fed by the gateway's events (``GatewayEvents``) and the
    metrics middleware. In one process they live in a registry of this app's own (tests build many
    apps); in multi-process mode prometheus-client writes them to files."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = None if multiprocess() else self.registry
        self.requests = Counter(
            "kapi_http_requests", "HTTP requests by route template, method and status",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "kapi_http_request_duration_seconds", "HTTP request latency by route template and method",
            ["route", "method"], buckets=_LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.cache = Counter(
            "kapi_cache_events", "Listing cache events: hits, misses, loads (database), waits (stampede), "
            "errors (Redis failed: served from the database), stale_fills_refused", ["event"], registry=registry,
        )  # fmt: skip
        self.near_cache = Counter(
            "kapi_near_cache_events", "Near cache: hits (served from process memory), invalidations (pushed by "
            "Redis), resets (the invalidation channel was lost: every local copy dropped)", ["event"],
            registry=registry,
        )  # fmt: skip
        self.reservations = Counter(
            "kapi_rate_limit_reservations", "Rate-limit reservations: taken (a round trip took budget ahead of "
            "need), local (a request admitted from it, no round trip), lapsed (its sub-window ended with units "
            "unspent), refused_locally (a refusal still in force repeated without Redis)", ["event"],
            registry=registry,
        )  # fmt: skip
        self.revocation_view = Counter(
            "kapi_revocation_view_events", "Revocation view: hits (a token found valid without Redis), misses "
            "(checked in Redis), invalidations (entries dropped by a push), resets (every entry dropped: the "
            "channel was lost or Redis flushed)", ["event"], registry=registry,
        )  # fmt: skip
        self.rate_limit = Counter(
            "kapi_rate_limit_decisions", "Rate-limit decisions by policy: admitted, refused, or shadow_refused (a "
            "shadow policy would have refused)", ["policy", "decision"], registry=registry,
        )  # fmt: skip
        self.near_limit = Counter(
            "kapi_rate_limit_near_limit", "Admitted requests that left a limit of the policy more than 80 % used "
            "(a tier about to bite)", ["policy"], registry=registry,
        )  # fmt: skip
        self.token_rejections = Counter(
            "kapi_token_rejections", "Requests refused by authentication, by reason", ["reason"], registry=registry
        )
        self.redis_latency = Histogram(
            "kapi_redis_round_trip_seconds", "Redis round-trip latency of the hot path's script calls (the calls "
            "that concurrent requests make in one event-loop turn share one round trip)",
            buckets=_REDIS_BUCKETS, registry=registry,
        )  # fmt: skip
        self.redis_calls = Counter("kapi_redis_script_calls", "Lua script calls sent to Redis", registry=registry)
        self.redis_errors = Counter("kapi_redis_errors", "Redis calls that failed or timed out", registry=registry)
        self.circuit_state = Gauge(
            "kapi_redis_circuit_state", "1 for the Redis circuit breaker's current state", ["state"],
            registry=registry, multiprocess_mode="livemax",
        )  # fmt: skip
        self.circuit_transitions = Counter(
            "kapi_redis_circuit_transitions", "Times the Redis circuit breaker entered each state", ["state"],
            registry=registry,
        )  # fmt: skip
        for event in ("hits", "misses", "loads", "waits", "errors", "stale_fills_refused"):
            self.cache.labels(event)
        for event in ("hits", "invalidations", "resets"):
            self.near_cache.labels(event)
        for event in ("taken", "local", "lapsed", "refused_locally"):
            self.reservations.labels(event)
        for event in ("hits", "misses", "invalidations", "resets"):
            self.revocation_view.labels(event)
        for state in _STATES:
            self.circuit_transitions.labels(state)
        self.circuit_changed("closed", count=False)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._children: dict[tuple[str, Any], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}
        #: Not yet handed to prometheus-client: counter child -> increments; histogram child ->
        #: [sum, count per bucket...].
        self._counts: dict[Any, float] = {}
        self._observed: dict[Any, list[float]] = {}
        self._flush_scheduled = False

    def _inc(self, child: Any, amount: float = 1) -> None:
        counts = self._counts
        counts[child] = counts.get(child, 0) + amount
        if not self._flush_scheduled:
            self._schedule_flush()

    def _observe(self, child: Any, bounds: tuple[float, ...], seconds: float) -> None:
        pending = self._observed.get(child)
        if pending is None:
            pending = self._observed[child] = [0.0] * (len(bounds) + 1)
        pending[0] += seconds
        pending[1 + bisect.bisect_left(bounds, seconds)] += 1  # the first bucket whose bound >= seconds
        if not self._flush_scheduled:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        try:
            asyncio.get_running_loop().call_later(1.0, self.flush)
        except RuntimeError:  # no loop (a script, a test): hand it over now
            self.flush()
            return
        self._flush_scheduled = True

    def flush(self) -> None:
        """Hand the pending counts and timings to prometheus-client."""
        self._flush_scheduled = False
        counts, self._counts = self._counts, {}
        observed, self._observed = self._observed, {}
        for child, amount in counts.items():
            child.inc(amount)
        for child, pending in observed.items():
            _add_to_histogram(child, pending)

    # The gateway's events. Label children are looked up once and kept: on the hot path ``labels()``
    # costs more than the increment.
    def cache_event(self, event: str) -> None:
        child = self._children.get(("cache", event))
        if child is None:
            child = self._children[("cache", event)] = self.cache.labels(event)
        self._inc(child)

    def near_cache_event(self, event: str) -> None:
        child = self._children.get(("near", event))
        if child is None:
            child = self._children[("near", event)] = self.near_cache.labels(event)
        self._inc(child)

    def reservation_event(self, event: str) -> None:
        child = self._children.get(("reservation", event))
        if child is None:
            child = self._children[("reservation", event)] = self.reservations.labels(event)
        self._inc(child)

    def revocation_view_event(self, event: str) -> None:
        child = self._children.get(("view", event))
        if child is None:
            child = self._children[("view", event)] = self.revocation_view.labels(event)
        self._inc(child)

    def rate_limit_decision(self, policy: str, decision: Decision, *, shadow: bool = False) -> None:
        outcome = "admitted" if decision.admitted else "shadow_refused" if shadow else "refused"
        child = self._children.get((policy, outcome))
        if child is None:
            child = self._children[(policy, outcome)] = self.rate_limit.labels(policy, outcome)
        self._inc(child)
        if decision.admitted and _near_limit(decision.states):
            near = self._children.get((policy, "near"))
            if near is None:
                near = self._children[(policy, "near")] = self.near_limit.labels(policy)
            self._inc(near)

    def token_rejected(self, reason: str) -> None:
        self.token_rejections.labels(reason).inc()

    def redis_call(self, seconds: float, ok: bool) -> None:
        """Every Redis call (through the circuit breaker): only failures are counted here."""
        if not ok:
            self.redis_errors.inc()

    def redis_round_trip(self, seconds: float, calls: int, ok: bool) -> None:
        self._observe(self.redis_latency, _REDIS_BUCKETS_INF, seconds)
        self._inc(self.redis_calls, calls)

    def circuit_changed(self, state: str, *, count: bool = True) -> None:
        for name in _STATES:
            self.circuit_state.labels(name).set(1 if name == state else 0)
        if count:
            self.circuit_transitions.labels(state).inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        self._inc(child)
        latency = self._latency_children.get((route, method))
        if latency is None:
            latency = self._latency_children[(route, method)] = self.latency.labels(route, method)
        self._observe(latency, _LATENCY_BUCKETS_INF, seconds)

    def exposition(self) -> bytes:
        self.flush()
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))


def _add_to_histogram(histogram: Any, pending: list[float]) -> None:
    """What ``observe()`` on ``histogram`` (an unlabelled histogram, or a labelled one's child) does for
    many observations at once, in one call per bucket instead of one per observation: ``pending`` is
    their sum, then how many fell in each bucket (the first whose bound is >= the value; +Inf last).

    The one place that uses prometheus-client's internals: the histogram's private ``_sum`` and
    ``_buckets`` (one value per bucket, in bound order, not cumulative, each with ``inc``), which
    ``observe()`` itself increments, in one process and in multi-process mode alike. Checked against
    prometheus-client >=0.20,<0.27, the range ``pyproject.toml`` pins; ``tests/test_upstream_contracts.py``
    fails, naming it, when a release changes them."""
    histogram._sum.inc(pending[0])
    buckets = histogram._buckets
    for index, count in enumerate(pending[1:]):
        if count:
            buckets[index].inc(count)


def _near_limit(states: tuple[LimitState, ...]) -> bool:
    """More than 80 % of one of the limits used."""
    if len(states) == 1:
        return states[0].remaining < states[0].limit.amount * 0.2
    return any(s.remaining < s.limit.amount * 0.2 for s in states)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template (unknown paths count as one label).

    With ``request_ids`` it also does what ``gateway.RequestIdMiddleware`` does, through the same
    ``begin_request``/``end_request`` (an id per request, echoed in ``X-Request-ID`` and set for the
    logs): the service's outermost layer does both, since every layer and ``send`` wrapper costs
    measurably on the hot path (about 3 % each at 3,000 req/s).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        resolver: EndpointResolver,
        request_ids: bool = False,
        access_log: AccessLog | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.resolver = resolver
        self.request_ids = request_ids
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        rid = begin_request(scope) if self.request_ids else None

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if rid is not None:
                    message.setdefault("headers", []).append(rid.header)
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except ClientDisconnect:  # the client hung up mid-request: no error, no 500, nobody to answer
            status = CLIENT_CLOSED_REQUEST
        finally:
            if rid is not None:
                end_request(rid)
            endpoint = self.resolver.resolve(scope)
            route = endpoint[endpoint.index(" ") + 1 :] if self.resolver.is_known(scope) else "(unmatched)"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"  # clients choose methods
            elapsed = time.perf_counter() - started
            self.metrics.observe_request(route, method, status, elapsed)
            if self.access_log is not None:
                self.access_log.request(scope, status, elapsed, rid.text if rid is not None else "")


async def metrics(request: Request) -> Response:
    body = request.app.state.metrics.exposition()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [Route("/metrics", metrics, methods=["GET"], name="metrics")]

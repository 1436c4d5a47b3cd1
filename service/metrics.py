"""``GET /metrics``: Prometheus text format from this process's counters."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service.state import Kapi

_BREAKER_STATES = ("closed", "open", "half_open")


class KapiCollector(Collector):
    """Reads the live counters of the cache and the circuit breaker at scrape time."""

    def __init__(self, kapi: Kapi) -> None:
        self.kapi = kapi

    def collect(self) -> Iterator[Metric]:
        stats = self.kapi.load_listing.stats
        cache = CounterMetricFamily("kapi_cache_events", "Listing cache events by kind", labels=["event"])
        for event in ("hits", "misses", "loads", "waits", "errors", "stale_fills_refused"):
            cache.add_metric([event], getattr(stats, event))
        yield cache
        state = GaugeMetricFamily(
            "kapi_redis_circuit_state", "1 for the circuit breaker's current state", labels=["state"]
        )
        for name in _BREAKER_STATES:
            state.add_metric([name], 1.0 if self.kapi.breaker.state == name else 0.0)
        yield state
        transitions = CounterMetricFamily(
            "kapi_redis_circuit_transitions", "Times the Redis circuit breaker entered each state", labels=["state"]
        )
        for name in _BREAKER_STATES:
            transitions.add_metric([name], self.kapi.breaker.transitions[name])  # type: ignore[index]
        yield transitions


def registry_for(kapi: Kapi) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KapiCollector(kapi))
    return registry


async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")


routes = [Route("/metrics", metrics, methods=["GET"], name="metrics")]

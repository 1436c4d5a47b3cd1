"""The seed's diagnostics, the probes, /metrics and /openapi.json."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from starlette.routing import Route

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import make_settings, serve

pytestmark = pytest.mark.anyio


async def test_test_redis_reports_version_and_round_trip(client: httpx.AsyncClient) -> None:
    response = await client.get("/test-redis")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["redis_version"].split(".")[0] in {"6", "7", "8"}
    assert 0 <= body["ping_ms"] < 1000


async def test_test_cache_writes_with_60s_ttl_and_reads_back(client: httpx.AsyncClient, redis: Redis) -> None:
    written = await client.post("/test-cache", json={"value": "merhaba"})
    assert written.status_code == 201
    assert written.json() == {"key": "test_cache", "value": "merhaba", "ttl": 60}
    assert await redis.get("test_cache") == b"merhaba"
    assert 58 <= await redis.ttl("test_cache") <= 60

    read = await client.get("/test-cache")
    assert read.status_code == 200
    assert read.json()["value"] == "merhaba" and 58 <= read.json()["ttl"] <= 60


async def test_test_cache_defaults_to_a_timestamp_and_404s_once_expired(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    written = await client.post("/test-cache")
    assert written.status_code == 201 and written.json()["value"].endswith("Z")
    await redis.pexpire("test_cache", 1)  # fast-forward the 60 s
    await asyncio.sleep(0.01)

    expired = await client.get("/test-cache")
    assert expired.status_code == 404
    assert expired.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("body", [{"value": "x" * 1025}, {"value": 5}, {"other": "x"}, [1]])
async def test_test_cache_rejects_bad_bodies(client: httpx.AsyncClient, body: object) -> None:
    response = await client.post("/test-cache", json=body)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200 and ready.json() == {"status": "ready", "redis": "ok", "database": "ok"}


async def test_diagnostics_answer_503_when_redis_is_down(own_redis_server: RedisServer, tmp_path: Path) -> None:
    app = create_app(make_settings(own_redis_server.url, tmp_path))
    async with serve(app) as client:
        own_redis_server.kill()
        for method, path in [
            ("GET", "/test-redis"),
            ("POST", "/test-cache"),
            ("GET", "/test-cache"),
            ("GET", "/ready"),
        ]:
            response = await client.request(method, path)
            assert response.status_code == 503, path
            assert response.headers["content-type"] == "application/problem+json"
        assert "Retry-After" in (await client.get("/test-redis")).headers
        assert (await client.get("/health")).status_code == 200


async def test_production_turns_diagnostics_off_unless_enabled(redis_server: RedisServer, tmp_path: Path) -> None:
    secret = "p" * 40
    quiet = create_app(make_settings(redis_server.url, tmp_path, env="production", jwt_secret=secret))
    async with serve(quiet) as client:
        assert (await client.get("/test-redis")).status_code == 404
        assert (await client.get("/health")).status_code == 200
    loud = create_app(make_settings(redis_server.url, tmp_path, env="production", jwt_secret=secret, diagnostics=True))
    async with serve(loud) as client:
        assert (await client.get("/test-redis")).status_code == 200


async def test_openapi_describes_every_route(app: object, client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    for route in app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, Route) or not route.include_in_schema:
            continue  # /docs and its static assets
        for method in route.methods - {"HEAD"}:
            operation = document["paths"][route.path][method.lower()]
            assert operation["summary"] and operation["responses"]
    assert "ListingCreate" in document["components"]["schemas"]


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'kapi_redis_circuit_state{state="closed"} 1.0' in response.text


async def test_unknown_paths_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/nope")
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    wrong = await client.put("/listings")
    assert wrong.status_code == 405 and wrong.headers["content-type"] == "application/problem+json"


async def test_test_redis_warns_when_the_eviction_policy_can_drop_revocations(
    client: httpx.AsyncClient, redis: Redis
) -> None:
    safe = (await client.get("/test-redis")).json()
    assert safe["maxmemory_policy"] == "noeviction" and safe["warnings"] == []
    for policy in ("volatile-lru", "allkeys-lfu", "volatile-ttl"):
        await redis.config_set("maxmemory-policy", policy)
        try:
            body = (await client.get("/test-redis")).json()
        finally:
            await redis.config_set("maxmemory-policy", "noeviction")
        assert body["maxmemory_policy"] == policy
        assert (
            len(body["warnings"]) == 1 and "blacklist:" in body["warnings"][0] and "noeviction" in body["warnings"][0]
        )

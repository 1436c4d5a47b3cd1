"""Metrics after a scripted set of requests, request ids, JSON logs without secrets, /test-redis's
extras, /docs served offline, and the doctor command against a running and a stopped Redis."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer, find_redis_cli
from service.app import create_app
from tests.conftest import CODE_A, PHONE_A, TEST_SECRET, bearer, http_client, login, make_settings
from tests.processes import ServiceProcess, service_env

PRODUCTION_SECRET = "prod-" + secrets.token_urlsafe(40)  # the repository's test secret is refused in production

ROOT = Path(__file__).resolve().parents[2]


def metric(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name}{labels} not found")


@pytest.mark.anyio
async def test_metrics_after_a_scripted_set_of_requests(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path, rate_limit="4/minute"))
    async with app.router.lifespan_context(app), http_client(app) as client:
        tokens = await login(client)
        headers = bearer(tokens)
        listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"},
                                     headers=headers)).json()  # fmt: skip
        path = f"/listings/{listing['id']}"
        for _ in range(3):  # MISS, HIT (from Redis), HIT-LOCAL (from the near cache)
            await client.get(path)
        await client.get("/listings/999999")  # 404, the fourth in the budget
        await client.get(path)  # 429
        await client.get("/nowhere/at/all")
        await client.get("/auth/session", headers={"Authorization": "Bearer not-a-token"})
        padded = tokens["access_token"] + "="
        await client.get("/auth/session", headers={"Authorization": f"Bearer {padded}"})
        await client.post("/auth/logout", headers=headers)
        await client.get("/auth/session", headers=headers)
        text = (await client.get("/metrics")).text

    assert metric(text, "kapi_http_requests_total", route="/listings/{listing_id}", method="GET", status="200") == 3
    assert metric(text, "kapi_http_requests_total", route="/listings/{listing_id}", method="GET", status="429") == 1
    assert metric(text, "kapi_http_requests_total", route="/listings/{listing_id}", method="GET", status="404") == 1
    assert metric(text, "kapi_http_requests_total", route="(unmatched)", method="GET", status="404") == 1
    assert metric(text, "kapi_http_request_duration_seconds_count", route="/listings", method="POST") == 1
    assert metric(text, "kapi_cache_events_total", event="hits") == 1
    assert metric(text, "kapi_near_cache_events_total", event="hits") == 1
    assert metric(text, "kapi_near_cache_events_total", event="resets") == 0
    assert metric(text, "kapi_cache_events_total", event="loads") == 2  # the listing, and the missing one
    assert metric(text, "kapi_rate_limit_decisions_total", policy="default", decision="refused") == 1
    assert metric(text, "kapi_token_rejections_total", reason="malformed") == 1
    assert metric(text, "kapi_token_rejections_total", reason="not_canonical") == 1
    assert metric(text, "kapi_token_rejections_total", reason="revoked") == 1
    assert metric(text, "kapi_redis_round_trip_seconds_count") > 3
    assert metric(text, "kapi_redis_script_calls_total") > 5
    assert metric(text, "kapi_redis_circuit_state", state="closed") == 1
    assert '/listings/1"' not in text and "/nowhere" not in text and "user" not in text  # bounded labels


@pytest.mark.anyio
async def test_request_id_is_echoed_or_made(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path))
    async with app.router.lifespan_context(app), http_client(app) as client:
        given = await client.get("/health", headers={"X-Request-ID": "abc-123"})
        assert given.headers["x-request-id"] == "abc-123"
        made = [(await client.get("/health")).headers["x-request-id"] for _ in range(2)]
        assert made[0] != made[1] and all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]+", rid) for rid in made)
        hostile = await client.get("/health", headers={"X-Request-ID": 'x" injected=1 ' + "y" * 300})
        assert hostile.headers["x-request-id"] not in ("", 'x" injected=1 ' + "y" * 300)


@pytest.mark.anyio
async def test_test_redis_reports_memory_clients_ratio_and_key_families(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path))
    async with app.router.lifespan_context(app), http_client(app) as client:
        headers = bearer(await login(client))
        listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"},
                                     headers=headers)).json()  # fmt: skip
        await client.get(f"/listings/{listing['id']}")
        await client.get(f"/listings/{listing['id']}")
        body = (await client.get("/test-redis")).json()
    assert body["used_memory"] > 0 and body["used_memory_human"] and body["connected_clients"] >= 1
    assert body["listing_cache_hit_ratio"] == 0.5
    assert body["keys"] == {"listing": 1, "blacklist": 0, "session": 1, "rate_limit": 4, "complete": True} or (
        body["keys"]["listing"] == 1 and body["keys"]["session"] == 1 and body["keys"]["complete"]
    )


@pytest.mark.anyio
async def test_docs_page_loads_its_assets_from_the_service(redis_server: RedisServer, tmp_path: Path) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path))
    async with app.router.lifespan_context(app), http_client(app) as client:
        page = await client.get("/docs")
        assert page.status_code == 200 and "SwaggerUIBundle" in page.text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert assets and all(asset.startswith("/docs/assets/") for asset in assets)  # nothing from a CDN
        for asset in assets:
            response = await client.get(asset)
            assert response.status_code == 200 and len(response.content) > 1000
        document = (await client.get("/openapi.json")).json()
        assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
        login_op = document["paths"]["/auth/login/phone"]["post"]
        assert login_op["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/PhoneLogin"
        }
        assert {"200", "400", "422", "429"} <= set(login_op["responses"])


@pytest.mark.slow
def test_json_logs_in_production_with_request_ids_and_no_secrets(own_redis_server: RedisServer, tmp_path: Path) -> None:
    env = service_env(own_redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
                      env="production", log_level="INFO", jwt_secret=PRODUCTION_SECRET)  # fmt: skip
    with ServiceProcess(env, cwd=tmp_path) as service, httpx.Client(base_url=service.url) as client:
        client.post("/auth/otp", json={"phone": "+905551234567"})
        client.post("/auth/otp", json={"phone": PHONE_A})
        tokens = client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
        client.get("/auth/session", headers={"Authorization": f"Bearer {tokens['access_token']}",
                                             "X-Request-ID": "trace-42"})  # fmt: skip
        client.post("/auth/logout", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    lines = [line for line in service.log.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])
    assert any(r["request_id"] == "trace-42" for r in records)  # the access log line of that request
    text = service.log.read_text()
    for secret in (PRODUCTION_SECRET, tokens["access_token"], tokens["refresh_token"], CODE_A):
        assert secret not in text


def doctor(redis_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "REDIS_URL": redis_url, "JWT_SECRET": TEST_SECRET,
           "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}"}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "service", "doctor"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_doctor_against_a_running_and_a_stopped_redis(own_redis_server: RedisServer, tmp_path: Path) -> None:
    healthy = doctor(own_redis_server.url, tmp_path)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "ok    Redis is running" in healthy.stdout and "ok    PING" in healthy.stdout
    assert "ok    the database is reachable" in healthy.stdout and "verdict: healthy" in healthy.stdout
    assert "ok    the eviction policy keeps revocations: maxmemory-policy is noeviction" in healthy.stdout
    subprocess.run([find_redis_cli(), "-p", str(own_redis_server.port), "config", "set", "maxmemory-policy",
                    "allkeys-lru"], check=True, capture_output=True)  # fmt: skip
    evicting = doctor(own_redis_server.url, tmp_path)
    assert evicting.returncode == 0 and "verdict: healthy" in evicting.stdout  # a warning, not a failure
    assert "WARN  the eviction policy keeps revocations: maxmemory-policy is allkeys-lru" in evicting.stdout
    own_redis_server.kill()
    broken = doctor(own_redis_server.url, tmp_path)
    assert broken.returncode == 1
    assert "FAIL  Redis is running" in broken.stdout and "FAIL  the port is open" in broken.stdout
    assert "FAIL  PING" in broken.stdout and "verdict: 3 problem(s)" in broken.stdout


@pytest.mark.slow
def test_metrics_add_up_across_workers(own_redis_server: RedisServer, tmp_path: Path) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = service_env(own_redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
                      prometheus_multiproc_dir=str(metrics_dir))  # fmt: skip
    with ServiceProcess(env, workers=2, cwd=tmp_path) as service:
        for _ in range(30):
            with httpx.Client(base_url=service.url) as fresh:  # new connections: both workers serve
                assert fresh.get("/health").status_code == 200
        time.sleep(1.2)  # each worker hands its counts over once a second (the answering one at once)
        text = httpx.get(f"{service.url}/metrics").text
    # All 30 (plus the start-up probe), though each worker only served some of them.
    assert metric(text, "kapi_http_requests_total", route="/health", method="GET", status="200") >= 30
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2  # one file per worker

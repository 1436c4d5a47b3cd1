"""Redis faults under steady load, against a real service process and a real redis-server:
killed (SIGKILL), paused (SIGSTOP, then SIGCONT), restarted empty; and failed invalidations."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import CODE_A, PHONE_A, bearer, http_client, login, make_settings, redis_client
from tests.processes import ServiceProcess, service_env

pytestmark = pytest.mark.anyio

TIMEOUT = 0.1  # REDIS_TIMEOUT for these services
MARGIN = 0.4  # scheduling noise on a busy 2-core machine


@dataclass
class Sample:
    at: float
    status: int
    seconds: float
    cache: str | None = None


@dataclass
class Load:
    """Steady traffic from the test: anonymous listing reads and token-carrying requests."""

    base: str
    token: str
    reads: list[Sample] = field(default_factory=list)
    authed: list[Sample] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    async def run(self, seconds: float) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=5) as client:
            deadline = time.monotonic() + seconds
            tick = 0
            while time.monotonic() < deadline:
                await self._sample(client, "/listings/1", {}, self.reads)
                if tick % 5 == 0:
                    await self._sample(client, "/auth/session", {"Authorization": f"Bearer {self.token}"}, self.authed)
                tick += 1
                await asyncio.sleep(0.02)

    async def _sample(self, client: httpx.AsyncClient, path: str, headers: dict[str, str], into: list[Sample]) -> None:
        began = time.monotonic()
        response = await client.get(path, headers=headers)
        into.append(Sample(began - self.started, response.status_code, time.monotonic() - began,
                           response.headers.get("x-cache")))  # fmt: skip

    @staticmethod
    def between(samples: list[Sample], start: float, end: float) -> list[Sample]:
        return [s for s in samples if start <= s.at < end]


def start_service(redis_server: RedisServer, tmp_path: Path, **settings: Any) -> ServiceProcess:
    env = service_env(
        redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        redis_timeout=TIMEOUT, rate_limit="100000/hour", log_level="INFO", **settings,
    )  # fmt: skip
    return ServiceProcess(env, cwd=tmp_path).start()


def prepare(service: ServiceProcess) -> str:
    httpx.post(f"{service.url}/auth/otp", json={"phone": PHONE_A})
    tokens = httpx.post(f"{service.url}/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    created = httpx.post(f"{service.url}/listings", json={"title": "Bisiklet", "price": "10", "city": "Ankara"},
                         headers=headers)  # fmt: skip
    assert created.status_code == 201
    httpx.get(f"{service.url}/listings/1")  # warm
    return str(tokens["access_token"])


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["kill", "pause", "restart_empty"])
async def test_redis_fault_under_load(fault: str, tmp_path: Path) -> None:
    redis_server = RedisServer(appendonly=True, extra_args=["--appendfsync", "always"]).start()
    service = start_service(redis_server, tmp_path)
    try:
        token = prepare(service)
        load = Load(service.url, token)
        runner = asyncio.create_task(load.run(7.0))
        await asyncio.sleep(1.0)
        redis_server.pause() if fault == "pause" else redis_server.kill()
        outage = time.monotonic() - load.started
        local_limit: list[int] = []
        if fault == "kill":  # while Redis is away, the sign-in limit (10/minute per address) still holds
            async with httpx.AsyncClient(base_url=service.url) as client:
                for _ in range(11):
                    wrong = await client.post("/auth/login/phone", json={"phone": PHONE_A, "code": "000000"})
                    local_limit.append(wrong.status_code)
        await asyncio.sleep(2.0)
        if fault == "pause":
            redis_server.resume()
        else:
            redis_server.start() if fault == "kill" else redis_server.restart(empty=True)
        back = time.monotonic() - load.started
        await runner
        async with httpx.AsyncClient(base_url=service.url) as client:
            metrics = (await client.get("/metrics")).text
            relogin = (await client.post("/auth/otp", json={"phone": PHONE_A})).status_code
        rate_keys = await _rate_limit_keys(redis_server.url)
    finally:
        service.stop()
        redis_server.close()

    worst = max(s.seconds for s in load.reads + load.authed)
    print(f"\n[{fault}] worst request latency {worst * 1000:.0f} ms over {len(load.reads) + len(load.authed)} requests")
    assert all(s.status == 200 for s in load.reads), [s for s in load.reads if s.status != 200][:5]
    assert worst < TIMEOUT + MARGIN
    during = Load.between(load.authed, outage + 0.3, back)
    assert during and all(s.status == 503 for s in during)  # a token cannot be checked: fail closed
    recovered = Load.between(load.reads, back + 3.0, 99)
    assert recovered and recovered[-1].cache in ("HIT", "HIT-LOCAL")  # caching is back within a few seconds
    after = Load.between(load.authed, back + 3.0, 99)
    if fault == "restart_empty":  # revocations were lost: tokens from before are refused
        assert after and all(s.status == 401 for s in after)
    else:
        assert after and all(s.status == 200 for s in after)
    assert relogin == 202
    assert rate_keys  # rate limiting counts in Redis again
    assert 'kapi_redis_circuit_transitions_total{state="open"}' in metrics
    assert "redis circuit open" in service.log.read_text()
    if fault == "kill":
        assert local_limit[-1] == 429 and set(local_limit[:10]) == {503}


@pytest.mark.slow
async def test_auth_fail_open_lets_signed_tokens_through_while_redis_is_down(tmp_path: Path) -> None:
    redis_server = RedisServer().start()
    service = start_service(redis_server, tmp_path, auth_fail_open="true")
    try:
        token = prepare(service)
        redis_server.kill()
        async with httpx.AsyncClient(base_url=service.url) as client:
            statuses = [
                (await client.get("/listings", headers={"Authorization": f"Bearer {token}"})).status_code
                for _ in range(5)
            ]
    finally:
        service.stop()
        redis_server.close()
    assert statuses == [200] * 5


async def _rate_limit_keys(url: str) -> list[bytes]:
    client = redis_client(url)
    keys = [key async for key in client.scan_iter("rate_limit:*")]
    await client.aclose()
    return keys


async def test_failed_invalidation_is_delivered_and_never_served_stale(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(own_redis_server.url, tmp_path, auth_fail_open=True)
    writer_app, idle_app = create_app(settings), create_app(settings)
    async with (
        writer_app.router.lifespan_context(writer_app),
        idle_app.router.lifespan_context(idle_app),
        http_client(writer_app) as writer,
        http_client(idle_app) as idle,
    ):
        headers = bearer(await login(writer))
        listing = (await writer.post("/listings", json={"title": "x", "price": "10", "city": "Ankara"},
                                     headers=headers)).json()  # fmt: skip
        path = f"/listings/{listing['id']}"
        await writer.get(path)
        assert (await idle.get(path)).headers["x-cache"] == "HIT"
        search = {"city": "ankara"}
        await idle.get("/listings", params=search)
        assert (await idle.get("/listings", params=search)).headers["x-cache"] == "HIT"  # a cached page

        own_redis_server.pause()
        for _ in range(3):
            await writer.get(path)  # time-outs open the writer's circuit
        patched = await writer.patch(path, json={"price": "20"}, headers=headers)
        assert patched.status_code == 200  # the change commits though Redis is away
        await asyncio.sleep(0.7)  # the idle process reads the outbox meanwhile
        own_redis_server.resume()

        for client in (idle, writer):  # nobody serves the stale entry (or page) still sitting in Redis
            assert (await client.get(path)).json()["price"] == "20.00"
            assert (await client.get("/listings", params=search)).json()["items"][0]["price"] == "20.00"
        await asyncio.sleep(1.5)  # a drainer deletes the key once Redis answers
        redis = redis_client(own_redis_server.url)
        cached = await redis.get(f"listing:{listing['id']}")
        assert cached is None or b'"20.00"' in cached  # the stale entry is gone from Redis
        for client in (idle, writer):
            assert (await client.get(path)).json()["price"] == "20.00"
        hit = await idle.get(path)
        assert hit.headers["x-cache"] == "HIT" and hit.json()["price"] == "20.00"
        await idle.get("/listings", params=search)  # the generation was bumped: pages cache again, fresh
        page = await idle.get("/listings", params=search)
        assert page.headers["x-cache"] == "HIT" and page.json()["items"][0]["price"] == "20.00"
        await redis.aclose()

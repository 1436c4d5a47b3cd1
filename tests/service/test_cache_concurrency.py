"""The cache under concurrency: one database load for a stampede across processes, and no stale
entry left behind by racing readers and writers (the leases of "Scaling Memcache at Facebook")."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import httpx
import orjson
import pytest

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import CODE_A, PHONE_A, bearer, http_client, login, make_settings, redis_client
from tests.processes import ServiceProcess, run_load_clients, service_env


def loads(metrics_text: str) -> float:
    match = re.search(r'^kapi_cache_events_total\{event="loads"\} (\S+)$', metrics_text, re.M)
    assert match
    return float(match.group(1))


@pytest.mark.slow
def test_a_stampede_across_two_processes_loads_the_database_at_most_once_each(
    own_redis_server: RedisServer, tmp_path: Path
) -> None:
    env = service_env(
        own_redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}", rate_limit="100000/hour", redis_timeout=1
    )
    with ServiceProcess(env, cwd=tmp_path) as first, ServiceProcess(env, cwd=tmp_path) as second:
        httpx.post(f"{first.url}/auth/otp", json={"phone": PHONE_A})
        tokens = httpx.post(f"{first.url}/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
        created = httpx.post(f"{first.url}/listings", json={"title": "x", "price": "1", "city": "Ankara"},
                             headers={"Authorization": f"Bearer {tokens['access_token']}"})  # fmt: skip
        assert created.status_code == 201
        before = sum(loads(httpx.get(f"{s.url}/metrics").text) for s in (first, second))

        statuses = run_load_clients(
            [first.url, second.url], processes=2, concurrency=100, path="/listings/1", token=tokens["access_token"]
        )

        after = sum(loads(httpx.get(f"{s.url}/metrics").text) for s in (first, second))
    assert statuses == [200] * 200
    assert after - before <= 2
    print(f"\n200 concurrent cold reads over 2 processes: {after - before:.0f} database load(s)")


@pytest.mark.anyio
async def test_racing_writers_and_readers_leave_every_cached_entry_equal_to_its_row(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    settings = make_settings(redis_server.url, tmp_path, rate_limit="100000/hour")
    apps = [create_app(settings), create_app(settings)]  # two "processes": nothing shared in memory
    async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
        clients = [http_client(app) for app in apps]
        headers = bearer(await login(clients[0]))
        ids = []
        for i in range(3):
            body = {"title": f"listing {i}", "price": "1", "city": "Ankara"}
            ids.append((await clients[0].post("/listings", json=body, headers=headers)).json()["id"])
        rng = random.Random(7)
        for app in apps:  # slow reads: the row is read, then the answer takes a while (the race window)
            cache = app.state.kapi.listings.read
            real_load = cache.func

            async def slow_load(listing_id: int, real_load=real_load) -> object:  # type: ignore[no-untyped-def]
                row = await real_load(listing_id)
                await asyncio.sleep(rng.random() * 0.03)
                return row

            cache.func = slow_load

        async def writer(n: int) -> None:
            client = clients[n % 2]
            await client.patch(f"/listings/{rng.choice(ids)}", json={"price": str(n)}, headers=headers)

        async def reader() -> None:
            await clients[rng.randrange(2)].get(f"/listings/{rng.choice(ids)}")

        redis = redis_client(redis_server.url)
        checked = 0
        for round_ in range(20):
            await asyncio.gather(*(writer(round_ * 3 + k) for k in range(3)), *(reader() for _ in range(12)))
            # Quiet now: whatever the cache holds must be what the database holds.
            for listing_id in ids:
                cached = await redis.get(f"listing:{listing_id}")
                if cached is not None and not cached.startswith(b"!"):
                    assert orjson.loads(cached) == await apps[0].state.kapi.listings.store.get(listing_id), round_
                    checked += 1
        for listing_id in ids:
            served = await clients[1].get(f"/listings/{listing_id}")
            assert served.json() == await apps[0].state.kapi.listings.store.get(listing_id)
        assert checked >= 10  # the cache was really in use
        await redis.aclose()
        for client in clients:
            await client.aclose()

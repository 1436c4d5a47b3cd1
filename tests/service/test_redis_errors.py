"""Redis answering with an error instead of vanishing (OOM, READONLY, NOSCRIPT), and an event loop
stalled by another task: clean problems or normal answers, never a 500, and nothing refused while
Redis is healthy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer, free_port
from service.app import create_app
from tests.conftest import bearer, login, own_task, serve
from tests.proxy import DroppingProxy

pytestmark = pytest.mark.anyio
T = TypeVar("T")


@pytest.fixture
async def service(settings: Any, redis: Redis) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], int]]:
    async with serve(create_app(settings)) as client:
        headers = bearer(await login(client))
        created = await client.post("/listings", json={"title": "Saat", "price": "5", "city": "Bursa"}, headers=headers)
        yield client, headers, created.json()["id"]


async def test_out_of_memory_fails_closed_for_tokens_and_never_500s(service: Any, redis: Redis) -> None:
    client, headers, listing_id = service
    tokens = await login(client)
    assert (await client.post("/auth/logout", headers=bearer(tokens))).status_code == 204
    await redis.config_set("maxmemory", 1)  # -OOM command not allowed when used memory > 'maxmemory'
    try:
        # The gateway's one script writes a rate-limit counter, so Redis refuses it before it runs:
        # a token cannot be checked, and gets 503 (never a pass); anonymous reads go on.
        with_token = await own_task(client.get("/listings", headers=headers))
        revoked = await own_task(client.get("/listings", headers=bearer(tokens)))
        anonymous = await own_task(client.get(f"/listings/{listing_id}"))
        write = await own_task(client.patch(f"/listings/{listing_id}", json={"price": "6"}, headers=headers))
    finally:
        await redis.config_set("maxmemory", 0)
    assert with_token.status_code == 503 and with_token.headers["content-type"] == "application/problem+json"
    assert "retry-after" in with_token.headers
    assert revoked.status_code in (401, 503)  # a revoked token never passes, full Redis or not
    assert anonymous.status_code == 200 and anonymous.headers["x-cache"] == "MISS"  # local limiter, database
    assert write.status_code == 503
    assert (await own_task(client.get("/listings", headers=headers))).status_code == 200  # and back at once


async def test_a_read_only_replica_is_a_clean_503(service: Any, redis: Redis) -> None:
    client, headers, listing_id = service
    fresh = bearer(await login(client))  # not yet checked in Redis: the gateway must ask it
    await redis.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # nobody there: READONLY, data kept
    try:
        refused = await own_task(client.get("/listings", headers=fresh))
        read = await own_task(client.get(f"/listings/{listing_id}"))
    finally:
        await redis.execute_command("REPLICAOF", "NO", "ONE")
    assert refused.status_code == 503 and refused.headers["content-type"] == "application/problem+json"
    assert read.status_code == 200
    assert (await client.get("/listings", headers=headers)).status_code == 200


async def test_flushed_scripts_are_loaded_again_transparently(service: Any, redis: Redis) -> None:
    client, headers, listing_id = service
    await redis.script_flush()  # what a restarted Redis, or SCRIPT FLUSH, leaves: NOSCRIPT
    responses = await asyncio.gather(*(client.get(f"/listings/{listing_id}", headers=headers) for _ in range(20)))
    assert {r.status_code for r in responses} == {200}


async def test_an_event_loop_stall_refuses_nothing_while_redis_is_healthy(
    settings: Any, redis: Redis, redis_server: RedisServer
) -> None:
    proxy = DroppingProxy(redis_server.port, delay=0.01)  # a Redis 10 ms away
    async with proxy, serve(create_app(replace(settings, redis_url=proxy.url))) as client:
        headers = bearer(await login(client))
        listing = {"title": "Saat", "price": "5", "city": "Bursa"}
        listing_id = (await client.post("/listings", json=listing, headers=headers)).json()["id"]

        async def stall() -> None:
            for _ in range(6):
                await asyncio.sleep(0.03)
                time.sleep(0.15)  # noqa: ASYNC251 -- a CPU-bound task holding the loop past REDIS_TIMEOUT

        async def signed_in_reads() -> list[int]:
            statuses = []
            for _ in range(12):
                statuses += [r.status_code for r in await asyncio.gather(
                    *(own_task(client.get(f"/listings/{listing_id}", headers=headers)) for _ in range(25))
                )]  # fmt: skip
            return statuses

        statuses, _ = await asyncio.gather(signed_in_reads(), stall())
        assert statuses.count(503) == 0 and set(statuses) == {200}
        assert (await client.get("/test-redis")).json()["circuit"] == "closed"

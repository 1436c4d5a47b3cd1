"""The near cache, the revocation view and reservations on a real Redis Sentinel setup (a master, a
replica, one Sentinel): a failover under read load never serves a listing older than the last write
the new master acknowledged, and a logout through one instance is refused at once by the other."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.testing import RedisServer
from tests.conftest import bearer, login, redis_client
from tests.sentinel import command, master_port, sentinel_setup
from tests.service.test_near_cache import WriteReadLoad, held_in_memory, new_listing, two_instances
from tests.service.test_near_cache_cluster import revocations_refused_at_once, until_local

pytestmark = pytest.mark.anyio


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    with sentinel_setup(tmp_path) as running:
        yield running


def settings(sentinel_port: int, **more: Any) -> dict[str, Any]:
    return {"redis_mode": "sentinel", "redis_sentinels": f"127.0.0.1:{sentinel_port}",
            "redis_sentinel_master": "mymaster", "redis_timeout": 0.5, "redis_connect_timeout": 1, **more}  # fmt: skip


@pytest.mark.parametrize("failover", ["sentinel-failover", "master-paused"])
async def test_a_failover_under_read_load_never_serves_a_value_older_than_the_new_masters_writes(
    sentinel: tuple[RedisServer, RedisServer, int], tmp_path: Path, failover: str
) -> None:
    master, replica, sentinel_port = sentinel
    async with two_instances("", tmp_path, **settings(sentinel_port)) as (one, two):
        headers = bearer(await login(one))
        path = await new_listing(one, headers)
        await held_in_memory(two, path)
        async with WriteReadLoad(one, two, path, headers) as load:
            if failover == "sentinel-failover":
                assert b"OK" in command(sentinel_port, "SENTINEL", "FAILOVER", "mymaster")
            else:
                master.pause()  # SIGSTOP: its connections stay open, nothing answers
            try:
                deadline = time.monotonic() + 30
                while str(replica.port).encode() not in await asyncio.to_thread(master_port, sentinel_port):
                    assert time.monotonic() < deadline, "no failover"
                    await asyncio.sleep(0.05)
                load.promoted()
                await load.until_acknowledged(30, within=20)
            finally:
                master.resume()
        assert load.stale() == []
        await until_local(two, path)  # the channel follows the new master: served from memory again
        assert b"role:master" in command(replica.port, "INFO", "replication")


async def test_a_logout_through_one_instance_is_refused_at_once_by_the_other(
    sentinel: tuple[RedisServer, RedisServer, int], tmp_path: Path
) -> None:
    _, _, sentinel_port = sentinel
    redis = redis_client("", **settings(sentinel_port))
    try:
        async with two_instances("", tmp_path, **settings(sentinel_port, rate_limit="100000/hour")) as (one, two):
            await revocations_refused_at_once(one, two, redis, cluster=False)
    finally:
        await redis.aclose()

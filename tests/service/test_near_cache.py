"""The listing read path's near cache, seen from outside: two instances on one Redis never serve a
listing older than a write that has answered, whatever happens to their connections or to Redis,
and a hot listing stops costing Redis reads."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import bearer, login, make_settings, own_task, serve
from tests.monitor import client_commands
from tests.processes import ServiceProcess, service_env

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def two_instances(redis_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[tuple[Any, Any]]:
    """Two service instances (apps with their own lifespans, Redis clients and near caches) on one
    Redis and one database."""
    first, second = (create_app(make_settings(redis_url, tmp_path, **settings)) for _ in range(2))
    async with serve(first) as one, serve(second) as two:
        yield one, two


async def new_listing(client: httpx.AsyncClient, headers: dict[str, str]) -> str:
    created = await client.post("/listings", json={"title": "v0", "price": "1", "city": "İzmir"}, headers=headers)
    assert created.status_code == 201
    return f"/listings/{created.json()['id']}"


async def held_in_memory(client: httpx.AsyncClient, path: str) -> None:
    """Read ``path`` until this instance serves it from memory (a miss, Redis, then memory)."""
    for _ in range(3):
        await client.get(path)
    assert (await client.get(path)).headers["x-cache"] == "HIT-LOCAL"


async def write_one_read_other(one: httpx.AsyncClient, two: httpx.AsyncClient, rounds: int = 100) -> list[str]:
    """Each round a write through ``one``, then three reads through ``two`` that must all see it;
    returns where each read was served from (``X-Cache``)."""
    headers = bearer(await login(one))
    path = await new_listing(one, headers)
    sources = []
    for round_ in range(1, rounds + 1):
        assert (await one.patch(path, json={"title": f"v{round_}"}, headers=headers)).status_code == 200
        for _ in range(3):  # right after the write (a miss), then from Redis, then from memory
            read = await two.get(path)
            assert read.json()["title"] == f"v{round_}", (round_, read.headers["x-cache"])
            sources.append(read.headers["x-cache"])
    return sources


class WriteReadLoad:
    """Through a failover: one instance writes a listing's title over and over (``w1``, ``w2``, ...)
    while the other reads it in a loop. Writes sent after ``promoted()`` and answered are the ones the
    new master acknowledged; ``stale()`` lists every read started after one of them that returned an
    older title."""

    def __init__(self, writer: httpx.AsyncClient, reader: httpx.AsyncClient, path: str, headers: dict[str, str]):
        self.writer, self.reader, self.path, self.headers = writer, reader, path, headers
        self.reads: list[tuple[float, int, str]] = []
        self.acknowledged: list[tuple[float, int]] = []
        self._promoted: float | None = None
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> WriteReadLoad:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._write())]
        await asyncio.sleep(0.3)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def promoted(self) -> None:
        self._promoted = time.monotonic()

    async def until_acknowledged(self, count: int, within: float) -> None:
        deadline = time.monotonic() + within
        while len(self.acknowledged) < count:
            assert time.monotonic() < deadline, "no write through the new master"
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # reads after the last of them

    def stale(self) -> list[tuple[int, int, str]]:
        stale = []
        for started, number, source in self.reads:
            newest = [n for at, n in self.acknowledged if at < started]
            if newest and number < newest[-1]:
                stale.append((number, newest[-1], source))
        assert sum(1 for started, _, _ in self.reads if started > self.acknowledged[0][0]) > 30
        return stale

    async def _read(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            read = await own_task(self.reader.get(self.path))
            if read.status_code == 200:
                self.reads.append((started, int(read.json()["title"][1:]), read.headers["x-cache"]))
            await asyncio.sleep(0.002)

    async def _write(self) -> None:
        number = 0
        while not self._stop.is_set():
            number += 1
            sent = time.monotonic()
            patched = await own_task(self.writer.patch(self.path, json={"title": f"w{number}"}, headers=self.headers))
            if patched.status_code == 200 and self._promoted is not None and sent > self._promoted:
                self.acknowledged.append((time.monotonic(), number))
            await asyncio.sleep(0.01)


async def test_a_patch_on_one_instance_is_never_followed_by_the_old_listing_on_the_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with two_instances(redis_server.url, tmp_path) as (one, two):
        sources = await write_one_read_other(one, two)
        assert sources.count("HIT-LOCAL") >= 90  # the near cache is really in the path


async def test_two_processes_never_stale(redis_server: RedisServer, tmp_path: Path) -> None:
    """The same across OS processes (uvicorn, as the Procfile starts it): the write's answer and the
    invalidation travel on different sockets, and the reader applies what reached its socket."""
    env = service_env(redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}", rate_limit="10000/hour")
    with ServiceProcess(env, cwd=tmp_path) as first, ServiceProcess(env, cwd=tmp_path) as second:
        async with httpx.AsyncClient(base_url=first.url) as one, httpx.AsyncClient(base_url=second.url) as two:
            headers = bearer(await login(one))
            path = await new_listing(one, headers)
            local = 0
            for round_ in range(1, 101):
                assert (await one.patch(path, json={"title": f"v{round_}"}, headers=headers)).status_code == 200
                for _ in range(3):
                    read = await two.get(path, headers=headers)
                    assert read.json()["title"] == f"v{round_}", (round_, read.headers["x-cache"])
                    local += read.headers["x-cache"] == "HIT-LOCAL"
            assert local >= 100


async def test_killed_connections_then_a_write_elsewhere_never_serve_stale(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    async with two_instances(redis_server.url, tmp_path) as (one, two):
        headers = bearer(await login(one))
        path = await new_listing(one, headers)
        await held_in_memory(two, path)
        for round_ in range(1, 6):
            mine = (await redis.client_info())["id"]
            for connection in await redis.client_list():  # every connection but this test's own
                if int(connection["id"]) != int(mine):
                    await redis.client_kill_filter(_id=connection["id"])
            assert (await own_task(one.patch(path, json={"title": f"k{round_}"}, headers=headers))).status_code == 200
            read = await own_task(two.get(path))
            assert read.status_code == 200 and read.json()["title"] == f"k{round_}", read.headers["x-cache"]
        deadline = time.monotonic() + 5
        while (await own_task(two.get(path))).headers["x-cache"] != "HIT-LOCAL":  # re-armed by itself
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("empty", [True, False], ids=["restarted-empty", "restarted-with-its-data"])
async def test_redis_restarted_never_serves_stale(tmp_path: Path, empty: bool) -> None:
    with RedisServer(appendonly=True, extra_args=["--appendfsync", "always"]) as server:
        async with two_instances(server.url, tmp_path) as (one, two):
            headers = bearer(await login(one))
            path = await new_listing(one, headers)
            await held_in_memory(two, path)
            server.restart(empty=empty)
            if empty:
                headers = bearer(await own_task(login(one)))  # an empty Redis forgot the login
            deadline = time.monotonic() + 5
            while (patched := await own_task(one.patch(path, json={"title": "after"}, headers=headers))).is_error:
                assert time.monotonic() < deadline, patched.text  # the instances reconnect
                await asyncio.sleep(0.1)
            sources = set()
            for _ in range(20):
                read = await own_task(two.get(path))
                assert read.status_code == 200 and read.json()["title"] == "after", read.headers["x-cache"]
                sources.add(read.headers["x-cache"])
                await asyncio.sleep(0.05)
            assert "HIT-LOCAL" in sources  # tracking came back by itself


async def test_a_hot_listing_read_300_times_costs_a_handful_of_redis_reads(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with serve(create_app(make_settings(redis_server.url, tmp_path))) as client:
        headers = bearer(await login(client))
        path = await new_listing(client, headers)
        key = f"listing:{path.rsplit('/', 1)[1]}"
        async with client_commands(redis_server.url) as seen:
            reads = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(300)))
        assert {r.status_code for r in reads} == {200}
        assert {r.headers["x-cache"] for r in reads} <= {"MISS", "HIT", "HIT-LOCAL"}
        touching = [c for c in seen.sent if key in c.split()]
        assert 1 <= len(touching) <= 5, touching
        metrics = (await client.get("/metrics")).text
        assert 'kapi_near_cache_events_total{event="hits"}' in metrics


async def test_head_and_etags_are_the_same_from_memory(redis_server: RedisServer, tmp_path: Path) -> None:
    async with serve(create_app(make_settings(redis_server.url, tmp_path))) as client:
        headers = bearer(await login(client))
        path = await new_listing(client, headers)
        first = await client.get(path)
        second = await client.get(path)
        local = await client.get(path)
        assert [first.headers["x-cache"], second.headers["x-cache"], local.headers["x-cache"]] == [
            "MISS", "HIT", "HIT-LOCAL"
        ]  # fmt: skip
        assert first.content == local.content and first.headers["etag"] == local.headers["etag"]
        head = await client.head(path)
        assert head.status_code == 200 and head.content == b"" and head.headers["x-cache"] == "HIT-LOCAL"
        assert head.headers["content-length"] == str(len(first.content))
        again = await client.get(path, headers={"If-None-Match": local.headers["etag"]})
        assert again.status_code == 304 and again.headers["x-cache"] == "HIT-LOCAL"
        assert (await client.get("/listings/999999")).status_code == 404  # a miss is never kept locally
        assert (await client.get("/listings/999999")).headers["x-cache"] == "HIT"


async def test_a_delete_is_seen_at_once_by_the_other_instance(redis_server: RedisServer, tmp_path: Path) -> None:
    async with two_instances(redis_server.url, tmp_path) as (one, two):
        headers = bearer(await login(one))
        path = await new_listing(one, headers)
        for _ in range(3):
            await two.get(path)
        assert (await one.delete(path, headers=headers)).status_code == 204
        gone = await two.get(path)
        assert gone.status_code == 404 and gone.headers["content-type"] == "application/problem+json"

"""The near cache against real redis-servers: local copies that a write anywhere drops before it has
answered, a lost channel that drops and bypasses them, bounds, and a Redis that refuses tracking."""

from __future__ import annotations

import asyncio
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from gateway import NearCache, cached
from gateway.cache import CachedFunction
from gateway.testing import RedisServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]  # the project: its gateway, not an installed one


async def until(condition: Any, within: float = 5.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.fixture
async def near(redis: Redis) -> AsyncIterator[NearCache]:
    cache = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
    await cache.start()
    assert cache.active
    yield cache
    await cache.aclose()


def item_cache(redis: Redis, near: NearCache, loads: list[int]) -> CachedFunction[[int], dict[str, Any] | None]:
    @cached("item:{item_id}", redis=redis, near=near)
    async def load(item_id: int) -> dict[str, Any] | None:
        loads.append(item_id)
        return {"id": item_id, "v": len(loads)}

    return load


async def test_a_hit_is_kept_locally_and_a_write_elsewhere_drops_it_before_it_answers(
    redis: Redis, redis_server: RedisServer, near: NearCache
) -> None:
    loads: list[int] = []
    load = item_cache(redis, near, loads)
    assert [await load.read_json(1) for _ in range(3)] == [
        (b'{"id":1,"v":1}', "loader"),
        (b'{"id":1,"v":1}', "redis"),  # the fill's own invalidation: kept from this read on
        (b'{"id":1,"v":1}', "local"),
    ]
    other = Redis.from_url(redis_server.url)  # another process's connection
    try:
        for round_ in range(100):  # write, and read at once: never the old value
            await other.set("item:1", b'{"round":%d}' % round_)
            assert await load.read_json(1) == (b'{"round":%d}' % round_, "redis")
            assert (await load.read_json(1))[1] == "local"
    finally:
        await other.aclose()
    assert near.counts["invalidations"] >= 100 and near.counts["hits"] >= 100


async def test_a_read_overtaken_by_an_invalidation_is_not_kept(redis: Redis, near: NearCache) -> None:
    await redis.set("item:2", b"old")
    mark = near.mark()  # a read sent now...
    await redis.set("item:2", b"new")  # ...and a write that lands before its reply is handled
    assert near.put("item:2", b"old", mark) is False
    assert near.get("item:2") is None
    assert near.put("item:2", b"new", near.mark()) is True
    assert near.get("item:2") == b"new"


async def test_only_the_tracked_prefix_and_flushall_drops_everything(redis: Redis, near: NearCache) -> None:
    assert near.put("item:3", b"x", near.mark())
    await redis.set("other:3", b"y")  # not under the prefix: no push, the copy stays
    await asyncio.sleep(0.05)
    assert near.get("item:3") == b"x"
    await redis.flushall()
    await until(lambda: near.get("item:3") is None)


async def test_the_channel_killed_drops_and_bypasses_until_it_is_back(
    redis: Redis, redis_server: RedisServer, near: NearCache
) -> None:
    loads: list[int] = []
    load = item_cache(redis, near, loads)
    for _ in range(3):
        await load.read_json(4)
    assert (await load.read_json(4))[1] == "local"
    admin = Redis.from_url(redis_server.url)
    try:
        clients = [c for c in await admin.client_list() if c["name"] == "kapi-near-cache"]
        assert len(clients) == 1
        await admin.client_kill_filter(_id=clients[0]["id"])
        await admin.set("item:4", b'{"after":"kill"}')  # a write the dead channel cannot announce
        assert await load.read_json(4) == (b'{"after":"kill"}', "redis")  # never the old copy
        assert near.counts["resets"] == 1
        await until(lambda: near.active)  # re-armed by itself
        await load.read_json(4)
        assert await load.read_json(4) == (b'{"after":"kill"}', "local")
        await admin.set("item:4", b'{"after":"rearm"}')
        assert await load.read_json(4) == (b'{"after":"rearm"}', "redis")
    finally:
        await admin.aclose()


@pytest.mark.parametrize("empty", [True, False], ids=["restarted-empty", "restarted-with-its-data"])
async def test_redis_restarted(own_redis_server: RedisServer, empty: bool) -> None:
    redis = Redis.from_url(own_redis_server.url, socket_timeout=0.5)
    near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
    await near.start()
    try:
        await redis.set("item:5", b"before")
        assert near.put("item:5", b"before", near.mark())
        own_redis_server.restart(empty=empty)
        writer = Redis.from_url(own_redis_server.url)
        await writer.set("item:5", b"after")  # written while this process may not have noticed
        await writer.aclose()
        assert near.get("item:5") is None  # the channel's end is in its socket: dropped, bypassed
        await until(lambda: near.active)
        assert near.get("item:5") is None  # re-armed empty
    finally:
        await near.aclose()
        await redis.aclose()


async def test_a_paused_redis_is_a_lost_channel(own_redis_server: RedisServer) -> None:
    redis = Redis.from_url(own_redis_server.url, socket_timeout=0.5)
    near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.1, connect_timeout=0.3)
    await near.start()
    try:
        assert near.put("item:6", b"x", near.mark())
        own_redis_server.pause()  # SIGSTOP: no RST, no EOF; only the PING goes unanswered
        try:
            await until(lambda: not near.active, within=3)
            assert near.get("item:6") is None and near.counts["resets"] == 1
        finally:
            own_redis_server.resume()
        await until(lambda: near.active, within=5)
    finally:
        await near.aclose()
        await redis.aclose()


async def test_bounded_by_entries_bytes_and_age(redis: Redis) -> None:
    near = NearCache(redis=redis, prefixes=["item:"], max_entries=10, max_bytes=1000, max_age=0.3)
    await near.start()
    try:
        for i in range(25):
            near.put(f"item:{i}", b"x" * 10, near.mark())
        assert len(near) == 10 and near.get("item:0") is None and near.get("item:24") == b"x" * 10
        near.get("item:15")  # recently used: kept over older entries
        for i in range(25, 30):
            near.put(f"item:{i}", b"x" * 10, near.mark())
        assert near.get("item:15") is not None and near.get("item:16") is None
        assert near.put("item:big", b"y" * 1001, near.mark()) is False  # larger than the whole budget
        for i in range(30, 40):
            near.put(f"item:{i}", b"z" * 150, near.mark())
        assert near.size_bytes <= 1000 and len(near) == 6
        await asyncio.sleep(0.35)
        assert near.get("item:39") is None  # older than max_age
    finally:
        await near.aclose()


async def test_redis_refusing_tracking_leaves_the_cache_off_and_reads_working(
    redis: Redis, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    await redis.acl_setuser("reader", enabled=True, passwords=["+s3cret-pw"], keys=["*"],
                            categories=["+@all"], commands=["-client"])  # fmt: skip
    try:
        limited = Redis.from_url(redis_server.url.replace("redis://", "redis://reader:s3cret-pw@"))
        near = NearCache(redis=limited, prefixes=["item:"])
        await near.start(wait=0.3)
        loads: list[int] = []
        load = item_cache(limited, near, loads)
        assert not near.active
        assert [(await load.read_json(7))[1] for _ in range(3)] == ["loader", "redis", "redis"]
        assert "tracking not established" in caplog.text and "NOPERM" in caplog.text
        assert "s3cret-pw" not in caplog.text
        await near.aclose()
        await limited.aclose()
    finally:
        await redis.acl_deluser("reader")


async def test_it_cannot_be_given_a_generation(redis: Redis, near: NearCache) -> None:
    from gateway.cache import Generation

    with pytest.raises(ValueError, match="near cache"):

        @cached("item:{i}", redis=redis, near=near, generation=Generation("g", redis=redis))
        async def load(i: int) -> int:
            return i


async def test_without_fcntl_and_termios_the_gateway_imports_and_the_near_cache_is_off(
    redis: Redis, redis_server: RedisServer
) -> None:
    """As on Windows: no ``fcntl``/``termios``. ``import gateway`` works, a near cache started there
    says once why it is off, and reads go to Redis."""
    script = textwrap.dedent("""
        import asyncio, logging, sys
        sys.modules["fcntl"] = sys.modules["termios"] = None  # importing them fails
        import gateway
        from redis.asyncio import Redis

        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

        async def main():
            redis = Redis.from_url(sys.argv[1])
            near = gateway.NearCache(redis=redis, prefixes=["item:"])
            await near.start()

            @gateway.cached("item:{i}", redis=redis, near=near)
            async def load(i):
                return {"i": i}

            print([(await load.read_json(1))[1] for _ in range(3)], near.active, near.disabled_reason)
            await near.aclose()
            await redis.aclose()

        asyncio.run(main())
    """)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, redis_server.url, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = (stream.decode() for stream in await asyncio.wait_for(process.communicate(), 60))
    assert process.returncode == 0, err
    assert out.startswith("['loader', 'redis', 'redis'] False this platform has no FIONREAD ioctl")
    off = [line for line in err.splitlines() if "near cache" in line]
    assert len(off) == 1 and off[0].startswith("WARNING gateway.nearcache: near cache off: this platform has no")
    assert "FIONREAD" in off[0] and "fcntl" in off[0]

"""@cached against a real Redis: keys, TTLs, hits, invalidation, collapse, leases, fail-open."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from gateway.breaker import CircuitBreaker
from gateway.cache import cached
from gateway.redis_keys import Keys
from gateway.testing import RedisServer
from tests.gateway.conftest import redis_client

pytestmark = pytest.mark.anyio


class FakeTable:
    """A stand-in *database* (not Redis) that counts its queries."""

    def __init__(self, rows: dict[int, dict[str, Any]], delay: float = 0.0) -> None:
        self.rows = rows
        self.queries = 0
        self.delay = delay

    async def get(self, listing_id: int) -> dict[str, Any] | None:
        self.queries += 1
        row = self.rows.get(listing_id)  # read first, answer late: a slow query's snapshot
        if self.delay:
            await asyncio.sleep(self.delay)
        return dict(row) if row is not None else None


async def test_miss_then_hit_stores_json_under_the_seed_key_with_ttl(redis: Redis) -> None:
    table = FakeTable({1: {"id": 1, "title": "Bisiklet"}})
    load = cached("listing:{listing_id}", redis=redis)(table.get)

    first = await load.lookup(listing_id=1)
    second = await load.lookup(1)

    assert (first.value, first.hit) == ({"id": 1, "title": "Bisiklet"}, False)
    assert (second.value, second.hit) == ({"id": 1, "title": "Bisiklet"}, True)
    assert table.queries == 1
    assert orjson.loads(await redis.get("listing:1")) == {"id": 1, "title": "Bisiklet"}
    assert 3598 <= await redis.ttl("listing:1") <= 3600


async def test_equal_arguments_of_other_types_get_their_own_keys(redis: Redis) -> None:
    """1, 1.0 and True are equal (and hash alike) in Python, but name different entries; asked again,
    each gives the same key as the first time."""
    load = cached("item:{listing_id}", redis=redis)(FakeTable({}).get)
    for _ in range(2):
        assert [load.key(1), load.key(True), load.key(1.0), load.key("1"), load.key(listing_id=1)] == [
            "item:1", "item:True", "item:1.0", "item:1", "item:1",
        ]  # fmt: skip


async def test_second_use_any_json_result_and_template(redis: Redis) -> None:
    calls = []

    @cached("profile:{user_id}:{lang}", redis=redis, ttl=120, keys=Keys("app1:"))
    async def profile(user_id: str, lang: str = "tr") -> list[Any]:
        calls.append((user_id, lang))
        return [user_id, lang, 3.5, {"nested": True}]

    assert await profile("u7") == ["u7", "tr", 3.5, {"nested": True}]
    assert await profile("u7", lang="tr") == ["u7", "tr", 3.5, {"nested": True}]
    assert await profile("u7", "en") == ["u7", "en", 3.5, {"nested": True}]
    assert calls == [("u7", "tr"), ("u7", "en")]
    assert 118 <= await redis.ttl("app1:profile:u7:tr") <= 120
    assert await redis.exists("profile:u7:tr") == 0


async def test_invalidate_makes_the_next_read_a_miss_with_new_data(redis: Redis) -> None:
    table = FakeTable({1: {"price": "10.00"}})
    load = cached("listing:{listing_id}", redis=redis)(table.get)
    await load(1)
    table.rows[1] = {"price": "12.00"}

    assert await load.invalidate(listing_id=1) is True
    assert await redis.exists("listing:1") == 0
    again = await load.lookup(1)
    assert (again.value, again.hit) == ({"price": "12.00"}, False)


async def test_concurrent_misses_in_one_process_collapse_into_one_load(redis: Redis) -> None:
    table = FakeTable({5: {"id": 5}}, delay=0.05)
    load = cached("listing:{listing_id}", redis=redis)(table.get)

    results = await asyncio.gather(*(load(5) for _ in range(100)))

    assert results == [{"id": 5}] * 100
    assert table.queries == 1


async def test_lease_lets_one_loader_fill_across_independent_caches(redis: Redis) -> None:
    # Two decorators on the same key share nothing in memory, as two processes would not.
    table = FakeTable({9: {"id": 9}}, delay=0.1)
    first = cached("listing:{listing_id}", redis=redis)(table.get)
    second = cached("listing:{listing_id}", redis=redis)(table.get)

    results = await asyncio.gather(first.lookup(9), second.lookup(9))

    assert [r.value for r in results] == [{"id": 9}, {"id": 9}]
    assert table.queries == 1


async def test_invalidation_during_a_load_stops_the_stale_value_being_cached(redis: Redis) -> None:
    table = FakeTable({3: {"v": "old"}}, delay=0.2)
    load = cached("listing:{listing_id}", redis=redis)(table.get)

    reader = asyncio.create_task(load(3))
    await asyncio.sleep(0.05)  # the reader holds the lease and is "reading the database"
    table.rows[3] = {"v": "new"}
    await load.invalidate(3)  # the writer's invalidation lands mid-read
    assert await reader == {"v": "old"}

    assert await redis.get("listing:3") is None  # the stale read was not cached
    assert await load(3) == {"v": "new"}


async def test_none_is_cached_briefly_so_missing_rows_spare_the_database(redis: Redis) -> None:
    table = FakeTable({})
    load = cached("listing:{listing_id}", redis=redis, miss_ttl=60)(table.get)

    assert await load(404) is None
    assert (await load.lookup(404)).hit is True
    assert table.queries == 1
    assert 0 < await redis.ttl("listing:404") <= 60


async def test_fails_open_when_redis_is_gone(own_redis_server: RedisServer) -> None:
    client = Redis.from_url(own_redis_server.url, socket_timeout=0.1, socket_connect_timeout=0.1)
    table = FakeTable({1: {"id": 1}})
    load = cached("listing:{listing_id}", redis=client, breaker=CircuitBreaker(failure_threshold=2))(table.get)
    assert (await load.lookup(1)).hit is False
    own_redis_server.kill()

    started = time.monotonic()
    results = [await load.lookup(1) for _ in range(20)]
    elapsed = time.monotonic() - started

    assert all(r.value == {"id": 1} and r.hit is False for r in results)
    assert await load.invalidate(1) is False
    assert elapsed < 1.0  # the breaker stops every call waiting on a dead server
    await client.aclose()


async def test_fails_open_without_a_client() -> None:
    load = cached("listing:{listing_id}", redis=lambda: None)(FakeTable({1: {"id": 1}}).get)
    assert (await load.lookup(1)) == ({"id": 1}, False)


async def test_a_failed_invalidation_stays_pending_and_is_never_served_stale(own_redis_server: RedisServer) -> None:
    client = redis_client(own_redis_server.url)
    table = FakeTable({1: {"v": "old"}})
    load = cached("listing:{listing_id}", redis=client, breaker=CircuitBreaker(reset_timeout=0.2, cooldown=0.2))(
        table.get
    )
    assert (await load.lookup(1)).value == {"v": "old"}
    assert (await load.lookup(1)).hit

    own_redis_server.pause()
    for _ in range(3):  # reads time out and open the circuit
        assert (await load.lookup(1)) == ({"v": "old"}, False)
    table.rows[1] = {"v": "new"}
    assert await load.invalidate(1) is False  # the write happened; Redis never heard of it
    own_redis_server.resume()

    assert await client.get("listing:1") is not None  # the stale entry is still in Redis...
    assert (await load.lookup(1)) == ({"v": "new"}, False)  # ...but this process does not read it
    await asyncio.sleep(0.25)  # the breaker lets a call through again
    assert await load.retry_pending() == ["listing:1"]
    assert await client.get("listing:1") is None
    assert (await load.lookup(1)) == ({"v": "new"}, False)
    assert (await load.lookup(1)) == ({"v": "new"}, True)
    await client.aclose()


async def test_a_cancelled_loader_hands_over_to_its_waiters(redis: Redis) -> None:
    table = FakeTable({1: {"id": 1}}, delay=0.2)
    load = cached("listing:{listing_id}", redis=redis)(table.get)
    leader = asyncio.ensure_future(load.lookup(1))
    await asyncio.sleep(0.05)  # the leader holds the lease and is reading the database
    followers = [asyncio.ensure_future(load.lookup(1)) for _ in range(5)]
    await asyncio.sleep(0.01)
    leader.cancel()  # a client disconnect, a timeout middleware, an anyio cancel scope
    results = await asyncio.wait_for(asyncio.gather(*followers), timeout=1.5)
    assert [r.value for r in results] == [{"id": 1}] * 5  # a value, not the leader's CancelledError
    assert leader.cancelled()
    assert table.queries == 2  # the cancelled load and the one that took over (with the same lease)
    assert orjson.loads(await redis.get("listing:1")) == {"id": 1}  # and it filled the cache


async def test_a_generation_makes_a_whole_family_stale_with_one_incr(redis: Redis) -> None:
    from gateway.cache import Generation

    table = FakeTable({1: {"id": 1}, 2: {"id": 2}})
    pages = Generation("pages", redis=redis)
    load = cached("page:{listing_id}", redis=redis, generation=pages)(table.get)
    assert [(await load.lookup(i)).hit for i in (1, 2, 1, 2)] == [False, False, True, True]
    assert await pages.bump()
    assert [(await load.lookup(i)).hit for i in (1, 2)] == [False, False]  # both stale at once
    assert await redis.get("generation:pages") == b"1" and await redis.ttl("generation:pages") > 0
    assert (await redis.get("page:1")).startswith(b"1|")  # stored with the generation it read


async def test_a_fill_is_refused_when_the_generation_moved_during_the_load(redis: Redis) -> None:
    from gateway.cache import Generation

    table = FakeTable({1: {"v": "old"}}, delay=0.2)
    pages = Generation("pages", redis=redis)
    load = cached("page:{listing_id}", redis=redis, generation=pages)(table.get)
    slow = asyncio.ensure_future(load.lookup(1))
    await asyncio.sleep(0.05)  # the loader read the old row
    table.rows[1] = {"v": "new"}
    await pages.bump()  # a write landed meanwhile
    assert (await slow).value == {"v": "old"}  # that caller got what it read...
    assert await redis.get("page:1") is None  # ...but it was not cached for others
    assert load.stats.counts["stale_fills_refused"] == 1
    assert (await load.lookup(1)).value == {"v": "new"}


async def test_invalidate_with_bump_is_one_step(redis: Redis, redis_server: RedisServer) -> None:
    from gateway.cache import Generation
    from tests.monitor import client_commands

    pages = Generation("pages", redis=redis)
    item = cached("item:{listing_id}", redis=redis)(FakeTable({1: {"id": 1}}).get)
    await item(1)
    await item.invalidate(1, bump=pages)  # scripts loaded
    async with client_commands(redis_server.url) as seen:
        assert await item.invalidate(1, bump=pages) is True
    assert seen.names() == ["EVALSHA"]  # DEL and INCR in one script: no KEYS, no SCAN
    assert await redis.get("generation:pages") == b"2"

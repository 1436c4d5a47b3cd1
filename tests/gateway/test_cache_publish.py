"""``CachedFunction.invalidate(..., publish=Publish(...))``: an event added to a Redis Stream in the
script that deletes the entry (and bumps its generation), against a real redis-server."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from gateway import cached
from gateway.cache import Generation, Publish
from gateway.testing import RedisServer
from tests.monitor import client_commands

pytestmark = pytest.mark.anyio


async def load(item_id: int) -> dict[str, int]:
    return {"id": item_id}


async def test_delete_bump_and_event_are_one_script(redis: Redis, redis_server: RedisServer) -> None:
    pages = Generation("pages", redis=redis)
    item = cached("item:{item_id}", redis=redis)(load)
    event = Publish("events", {"type": "updated", "id": 1}, max_len=100, ttl=600)
    await item(1)
    await item.invalidate(1, bump=pages, publish=event)  # (the script is loaded now)
    await item(1)
    async with client_commands(redis_server.url) as seen:
        assert await item.invalidate(1, bump=pages, publish=event) is True
    assert seen.names() == ["EVALSHA"]
    assert await redis.get("item:1") is None
    assert await redis.get("generation:pages") == b"2"
    entries = await redis.xrange("events")
    assert [fields for _, fields in entries] == [{b"type": b"updated", b"id": b"1"}] * 2
    assert 0 < await redis.ttl("events") <= 600


async def test_an_event_without_a_generation(redis: Redis) -> None:
    item = cached("item:{item_id}", redis=redis)(load)
    await item(2)
    assert await item.invalidate(2, publish=Publish("events", {"type": "deleted"})) is True
    assert await redis.get("item:2") is None
    assert await redis.xlen("events") == 1


async def test_the_stream_stays_bounded(redis: Redis) -> None:
    item = cached("item:{item_id}", redis=redis)(load)
    for n in range(500):
        await item.invalidate(n, publish=Publish("events", {"n": n}, max_len=50))
    assert 50 <= await redis.xlen("events") < 200  # MAXLEN ~: trimmed by whole radix-tree nodes
    last = (await redis.xrevrange("events", count=1))[0][1]
    assert last == {b"n": b"499"}


async def test_no_event_when_redis_is_unreachable(redis: Redis) -> None:
    reachable = True
    item = cached("item:{item_id}", redis=lambda: redis if reachable else None)(load)
    pages = Generation("pages", redis=redis)
    reachable = False
    assert await item.invalidate(3, bump=pages, publish=Publish("events", {"type": "created"})) is False
    assert item.key(3) in item.pending and pages.pending
    reachable = True
    assert await item.retry_pending() == [item.key(3)]  # the invalidation is delivered, the event never
    assert await redis.exists("events") == 0


async def test_an_event_needs_fields(redis: Redis) -> None:
    item = cached("item:{item_id}", redis=redis)(load)
    with pytest.raises(ValueError):
        await item.invalidate(4, publish=Publish("events", {}))

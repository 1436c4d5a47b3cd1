"""The limiter's algorithm (lua/ratelimit.lua) against a real Redis: bounded state whatever the limit
and the traffic, never more than the limit in any window, cost, and keys left by the old sliding log."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from gateway import Policy, RateLimiter
from gateway.ratelimit import Limit, LocalLimiter, parse_limits
from gateway.ratelimit.strategy import BUCKETS

pytestmark = pytest.mark.anyio


async def test_state_stays_a_few_hundred_bytes_whatever_the_traffic(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    limits = parse_limits("100000/hour")
    for _ in range(20):  # 2,000 hits, in batches as concurrent requests send them
        await asyncio.gather(*(limiter.hit("rate_limit:42:GET /listings/{listing_id}", limits) for _ in range(100)))
    memory = await redis.memory_usage("rate_limit:42:GET /listings/{listing_id}")
    assert memory is not None and memory <= 256, memory  # the sliding log used ~238 KB here
    assert await redis.strlen("rate_limit:42:GET /listings/{listing_id}") == 16 + 4 * (BUCKETS + 1)
    several = parse_limits("10/second;1000/minute;100000/hour")
    for _ in range(300):
        await limiter.hit("rate_limit:42:GET /x", several)
    assert await redis.memory_usage("rate_limit:42:GET /x") <= 512  # three limits, still far under 4 KiB


async def test_exact_under_concurrency_with_a_large_limit(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    limits = parse_limits("500/hour")
    decisions = await asyncio.gather(*(limiter.hit("rate_limit:u:GET /x", limits) for _ in range(600)))
    assert sum(d.admitted for d in decisions) == 500
    assert sorted(d.states[0].remaining for d in decisions if d.admitted) == list(range(500))


async def test_cost_takes_several_units_and_refusals_take_none(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    limits = (Limit(10, 60),)
    decisions = [await limiter.hit("rate_limit:u:POST /listings", limits, cost=4) for _ in range(4)]
    assert [d.admitted for d in decisions] == [True, True, False, False]
    assert [d.states[0].remaining for d in decisions] == [6, 2, 2, 2]
    assert (await limiter.hit("rate_limit:u:POST /listings", limits, cost=2)).admitted  # 2 units were left
    with pytest.raises(ValueError, match="cost of 11"):
        Policy.of("big", "10/minute", cost=11)


async def test_a_burst_at_a_window_edge_is_no_second_window(redis: Redis) -> None:
    """A fixed window would admit 2 x 5 across its boundary; here the second burst waits."""
    limiter = RateLimiter(redis)
    limits = (Limit(5, 2),)
    first = [await limiter.hit("rate_limit:u:GET /edge", limits) for _ in range(5)]
    await asyncio.sleep(1.2)  # past any 1-second boundary a fixed window would reset on
    second = [await limiter.hit("rate_limit:u:GET /edge", limits) for _ in range(5)]
    assert all(d.admitted for d in first) and not any(d.admitted for d in second)
    wait = second[-1].retry_after
    assert 1 <= wait <= 2  # the real wait: what is left of the 2 s, plus at most one 0.1 s sub-window


async def test_a_key_left_by_the_sliding_log_is_read_once_and_replaced(redis: Redis) -> None:
    now_ms = int((await redis.time())[0]) * 1000
    # What the limiter before this one wrote: a sorted set of admitted requests (score: server ms).
    await redis.zadd("rate_limit:old:GET /x", {f"{now_ms - i * 1000}:n{i}": now_ms - i * 1000 for i in range(7)})
    decision = await RateLimiter(redis).hit("rate_limit:old:GET /x", (Limit(10, 3600),))
    assert decision.admitted and decision.states[0].remaining == 2  # 7 old + this one counted, not twice
    assert await redis.type("rate_limit:old:GET /x") == b"string"
    assert (await RateLimiter(redis).hit("rate_limit:old:GET /x", (Limit(10, 3600),))).states[0].remaining == 1


def test_the_local_fallback_keeps_the_same_guarantee() -> None:
    local = LocalLimiter()
    limits = (Limit(3, 60),)
    assert [local.hit("k", limits).admitted for _ in range(4)] == [True, True, True, False]
    assert local.hit("k", limits, cost=1).states[0].remaining == 0
    assert not local.hit("other", (Limit(5, 60),), cost=6).admitted

"""The limiter's algorithm (lua/ratelimit.lua) against a real Redis: bounded state whatever the limit
and the traffic, never more than the limit in any window, cost, and keys left by the old sliding log.

Where windows must slide, the algorithm runs at a time the test sets (``ClockedLimiter``, and
``LocalLimiter`` with a clock); one test shows that Redis's own clock slides them in real time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis

from gateway import Policy, RateLimiter
from gateway.ratelimit import Decision, Limit, LocalLimiter, parse_limits
from gateway.ratelimit.strategy import BUCKETS, decision_of, limit_args
from gateway.scripts import lua_source

pytestmark = pytest.mark.anyio


class Clock:
    """Seconds that a test moves by hand (steps of 1/128 s are exact in binary: whole ms stay whole)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ClockedLimiter(RateLimiter):
    """``RateLimiter``'s algorithm (``rate_limit`` of lua/ratelimit.lua) on a real Redis, at the time
    ``clock`` says instead of Redis's ``TIME``: rate_limit.lua without its clock line."""

    SCRIPT = lua_source("ratelimit") + (
        "local limits = {}\n"
        "for i = 5, #ARGV do limits[#limits + 1] = tonumber(ARGV[i]) end\n"
        "return rate_limit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]),\n"
        "  limits)\n"
    )

    def __init__(self, redis: Redis, clock: Callable[[], float]) -> None:
        super().__init__(redis)
        self.client = redis
        self.clock = clock

    async def hit(self, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        args = [int(self.clock() * 1000), *limit_args(limits, cost)]
        return decision_of(await self.client.eval(self.SCRIPT, 1, key, *args), limits)


Hit = Callable[[str, Sequence[Limit]], Awaitable[Decision]]


@pytest.fixture(params=["redis", "local"])
def clocked(request: pytest.FixtureRequest, redis: Redis) -> tuple[Clock, Hit]:
    """The algorithm at a time the test sets: on Redis, and in process memory (the fallback)."""
    clock = Clock()
    if request.param == "redis":
        return clock, ClockedLimiter(redis, clock).hit
    local = LocalLimiter(clock=clock)

    async def hit(key: str, limits: Sequence[Limit]) -> Decision:
        return local.hit(key, limits)

    return clock, hit


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


async def test_a_burst_at_a_window_edge_is_no_second_window(clocked: tuple[Clock, Hit]) -> None:
    """A fixed window would admit 2 x 5 across its boundary; here the second burst waits."""
    clock, hit = clocked
    limits = (Limit(5, 2),)
    clock.now = 1001.875  # just before the boundaries a fixed window of 1 s or of 2 s would reset on
    first = [await hit("rate_limit:u:GET /edge", limits) for _ in range(5)]
    clock.now = 1002.125
    second = [await hit("rate_limit:u:GET /edge", limits) for _ in range(5)]
    assert all(d.admitted for d in first) and not any(d.admitted for d in second)
    # The real wait: what is left of the 2 s (1.75 s), plus at most one 0.1 s sub-window, rounded up.
    assert second[-1].retry_after == 2
    clock.now = 1003.875  # 2 s after the first burst: a sliding log would free it now, the sub-window not yet
    assert not (await hit("rate_limit:u:GET /edge", limits)).admitted
    clock.now = 1003.90625  # once its 0.1 s sub-window has left the window
    assert [(await hit("rate_limit:u:GET /edge", limits)).admitted for _ in range(6)] == [True] * 5 + [False]


async def test_no_span_of_the_window_admits_more_than_the_limit(clocked: tuple[Clock, Hit]) -> None:
    """Requests 1/128 s to 1/8 s apart (a fixed pattern) for 20 s, under a limit of 5 per 2 seconds."""
    clock, hit = clocked
    admitted: list[float] = []
    for step in range(300):
        clock.now += (1 + step * 7 % 16) / 128
        if (await hit("rate_limit:u:GET /slide", (Limit(5, 2),))).admitted:
            admitted.append(clock.now)
    assert len(admitted) >= 45  # traffic does get through as the window slides (at most 50 in 20 s)
    for i, start in enumerate(admitted):
        assert len([t for t in admitted[i:] if t - start <= 2]) <= 5, admitted


async def test_redis_server_time_slides_the_window(redis: Redis) -> None:
    """What the clocked tests leave out: rate_limit.lua reads Redis's clock, which moves in real time
    (the hourly limit keeps the key alive, so it is the clock that frees the second's unit, not expiry)."""
    limiter = RateLimiter(redis)
    limits = (Limit(1, 1), Limit(100, 3600))
    assert (await limiter.hit("rate_limit:u:GET /real", limits)).admitted
    refused = await limiter.hit("rate_limit:u:GET /real", limits)
    assert not refused.admitted and refused.states[0].reset == 2  # 1 s, plus up to one 50 ms sub-window
    started = time.monotonic()
    while not (await limiter.hit("rate_limit:u:GET /real", limits)).admitted:
        assert time.monotonic() - started < 1.5, "the window did not slide with Redis's clock"
        await asyncio.sleep(0.02)
    assert time.monotonic() - started >= 0.9  # and not before the second was over


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
    assert local.clock is time.monotonic  # by default, the process's own clock

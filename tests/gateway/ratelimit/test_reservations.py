"""Reservations on a real Redis: several processes' worth of ``Reservations`` sharing one key never
admit more than the limit (whatever the concurrency, and with a cost), lose little, spend a unit only
within the sub-window it was counted in, stay exact for small limits, and repeat a refusal without
Redis until its wait is over."""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import count

import pytest
from redis.asyncio import Redis

from gateway import RateLimiter
from gateway.events import GatewayEvents
from gateway.ratelimit import Limit, parse_limits
from gateway.ratelimit.reservations import Reservations
from gateway.testing import RedisServer
from tests.gateway.conftest import redis_client

pytestmark = pytest.mark.anyio


class Events(GatewayEvents):
    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def reservation_event(self, event: str) -> None:
        self.counts[event] += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def scripts_run(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0)) + int(stats.get("cmdstat_eval", {}).get("calls", 0))


@pytest.fixture
def limiter(redis_server: RedisServer) -> RateLimiter:
    return RateLimiter(redis_client(redis_server.url, redis_timeout=2.0))


keys = count()


@pytest.mark.parametrize("cost", [1, 3])
async def test_four_processes_at_once_never_over_admit_and_lose_little(limiter: RateLimiter, cost: int) -> None:
    limits = parse_limits("500/hour")
    key = f"rate_limit:u{next(keys)}:GET /x"
    processes = [Reservations() for _ in range(4)]

    async def warm(reservations: Reservations) -> None:  # each process grows its k first
        for _ in range(3):
            await reservations.hit(limiter, key, limits, cost)

    warmed = await asyncio.gather(*(warm(r) for r in processes))
    demand = 2 * 500 // cost  # twice the limit, 600 concurrent requests or more
    decisions = await asyncio.gather(
        *(processes[i % 4].hit(limiter, key, limits, cost) for i in range(max(demand, 600)))
    )
    admitted_units = cost * (sum(d.admitted for d in decisions) + 3 * len(warmed))
    assert admitted_units <= 500
    # What may be lost: units each process still holds (at most 1 % of the limit: 5 each).
    assert admitted_units >= 500 - 4 * 5 - cost
    assert min(state.remaining for d in decisions for state in d.states) >= 0


async def test_a_small_limit_is_counted_in_redis_request_by_request(limiter: RateLimiter, redis: Redis) -> None:
    reservations = Reservations()
    limits = parse_limits("100/hour")  # 1 % of it is 1 unit: no reservation
    before = await scripts_run(redis)
    decisions = [await reservations.hit(limiter, "rate_limit:small:GET /x", limits) for _ in range(50)]
    assert await scripts_run(redis) - before == 50
    assert [d.states[0].remaining for d in decisions] == list(range(99, 49, -1))


async def test_a_large_limit_takes_budget_ahead_and_reports_what_it_knows(limiter: RateLimiter, redis: Redis) -> None:
    events = Events()
    reservations = Reservations(events=events)
    limits = parse_limits("100000/hour")
    before = await scripts_run(redis)
    decisions = [await reservations.hit(limiter, "rate_limit:large:GET /x", limits) for _ in range(1000)]
    trips = await scripts_run(redis) - before
    assert trips <= 1000 * 0.05  # k grows to 512: about a dozen round trips per 1,000 requests
    assert events.counts["local"] == 1000 - trips
    # One process alone: Redis's remaining plus what it holds is exactly what is left.
    assert [d.states[0].remaining for d in decisions] == list(range(99_999, 98_999, -1))


async def test_held_units_are_not_spent_after_their_sub_window(redis_server: RedisServer, redis: Redis) -> None:
    clock = Clock()
    limiter = RateLimiter(redis_client(redis_server.url, redis_timeout=2.0))
    reservations = Reservations(clock=clock, share=1)
    limits = (Limit(2000, 20),)  # sub-windows of 1 s
    key = "rate_limit:window:GET /x"
    for _ in range(8):
        await reservations.hit(limiter, key, limits)
    held = reservations.take(key, limits, 1)
    assert held is not None  # units are held...
    clock.now += 1.0  # ...but a whole sub-window later (at most 1 s is left of the one they were counted in)
    before = await scripts_run(redis)
    assert reservations.take(key, limits, 1) is None
    await reservations.hit(limiter, key, limits)
    assert await scripts_run(redis) - before == 1


async def test_a_refusal_is_repeated_without_redis_until_its_wait_is_over(limiter: RateLimiter, redis: Redis) -> None:
    clock = Clock()
    events = Events()
    reservations = Reservations(clock=clock, events=events)
    limits = parse_limits("3/hour")
    key = "rate_limit:refused:GET /x"
    assert [(await reservations.hit(limiter, key, limits)).admitted for _ in range(3)] == [True] * 3
    first = await reservations.hit(limiter, key, limits)
    assert not first.admitted
    before = await scripts_run(redis)
    clock.now += 0.5
    again = [await reservations.hit(limiter, key, limits) for _ in range(100)]
    assert await scripts_run(redis) == before  # a client hammering after a 429 costs Redis nothing...
    assert events.counts["refused_locally"] == 100
    assert all(not d.admitted for d in again)
    assert first.retry_after - 1 <= again[0].retry_after <= first.retry_after  # the wait counts down
    clock.now += 0.5
    assert reservations.refused(key, limits, 1) is None  # ...for a second at most: then Redis decides again
    assert not (await reservations.hit(limiter, key, limits)).admitted
    assert await scripts_run(redis) == before + 1


async def test_a_deleted_rate_limit_key_is_obeyed_within_the_refusal_memory(limiter: RateLimiter, redis: Redis) -> None:
    clock = Clock()
    reservations = Reservations(clock=clock)
    limits = parse_limits("1/hour")
    key = "rate_limit:cleared:GET /x"
    assert (await reservations.hit(limiter, key, limits)).admitted
    assert not (await reservations.hit(limiter, key, limits)).admitted
    await redis.delete(key)  # what an operator's fix does
    assert not (await reservations.hit(limiter, key, limits)).admitted  # still remembered...
    clock.now += reservations.refusal_memory
    assert (await reservations.hit(limiter, key, limits)).admitted  # ...but not longer than that


async def test_a_trip_that_took_nothing_lets_the_next_one_reserve(limiter: RateLimiter) -> None:
    reservations = Reservations()
    limits = parse_limits("100000/hour")
    key = "rate_limit:abandoned:GET /x"
    for _ in range(3):
        await reservations.hit(limiter, key, limits)  # k grows past 1
    assert reservations.want(key, limits, 1) > 1  # this trip may reserve...
    assert reservations.want(key, limits, 1) == 1  # ...and, while it is out, no other
    reservations.abandon(key)  # it came back with nothing (e.g. its token was revoked)
    assert reservations.want(key, limits, 1) > 1

"""CircuitBreaker: opens on repeated failures, probes after the pause, closes on success."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import GatewayEvents
from gateway.breaker import CircuitBreaker
from gateway.errors import RedisUnavailable

pytestmark = pytest.mark.anyio


async def fail() -> None:
    raise RedisConnectionError("down")


async def ok() -> str:
    return "ok"


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_opens_probes_and_closes() -> None:
    changes: list[str] = []

    class Changes(GatewayEvents):
        def circuit_changed(self, state: str) -> None:
            changes.append(state)

    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5, cooldown=0, events=Changes(), clock=clock)
    for _ in range(2):
        with pytest.raises(RedisUnavailable):
            await breaker.call(fail)
    assert breaker.state == "open"
    with pytest.raises(RedisUnavailable, match="circuit open"):
        await breaker.call(ok)  # not even attempted
    clock.now += 4.9
    with pytest.raises(RedisUnavailable, match="circuit open"):
        await breaker.call(ok)  # not before the pause is over

    clock.now += 0.1
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert changes == ["open", "half_open", "closed"]


async def test_a_failed_probe_reopens() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, cooldown=0, clock=clock)
    with pytest.raises(RedisUnavailable):
        await breaker.call(fail)
    clock.now += 5
    with pytest.raises(RedisUnavailable, match="ConnectionError"):  # the probe reached Redis
        await breaker.call(fail)
    assert breaker.state == "open" and not breaker.allow()
    clock.now += 4.9
    assert not breaker.allow()  # a full pause again, from the failed probe
    clock.now += 0.1
    assert breaker.allow()  # the next probe
    assert breaker.transitions == {"closed": 0, "open": 2, "half_open": 2}


async def test_after_a_failure_the_same_request_skips_redis_for_the_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown=5, clock=clock)

    async def one_request() -> list[str]:
        outcomes = []
        for call in (fail, ok):
            try:
                await breaker.call(call)
                outcomes.append("ok")
            except RedisUnavailable as exc:
                outcomes.append(str(exc).split(":")[0])
        return outcomes

    # A request whose first call failed skips its second (no second timeout)...
    assert await asyncio.create_task(one_request()) == ["ConnectionError", "circuit open"]
    # ...while another request, in its own task, still reaches Redis.
    assert await asyncio.create_task(breaker.call(ok)) == "ok"
    assert breaker.state == "closed"

    async def skips_after_failing(wait: float) -> bool:
        with pytest.raises(RedisUnavailable):
            await breaker.call(fail)
        clock.now += wait
        return not breaker.allow()

    assert await asyncio.create_task(skips_after_failing(4.9))  # inside the cooldown: skipped
    assert not await asyncio.create_task(skips_after_failing(5))  # once it is over, Redis again

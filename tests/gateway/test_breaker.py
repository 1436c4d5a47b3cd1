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


async def test_opens_probes_and_closes() -> None:
    changes: list[str] = []

    class Changes(GatewayEvents):
        def circuit_changed(self, state: str) -> None:
            changes.append(state)

    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=0.05, cooldown=0, events=Changes())
    for _ in range(2):
        with pytest.raises(RedisUnavailable):
            await breaker.call(fail)
    assert breaker.state == "open"
    with pytest.raises(RedisUnavailable, match="circuit open"):
        await breaker.call(ok)  # not even attempted

    await asyncio.sleep(0.06)
    assert await breaker.call(ok) == "ok"
    assert breaker.state == "closed"
    assert changes == ["open", "half_open", "closed"]


async def test_a_failed_probe_reopens() -> None:
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=0.01, cooldown=0)
    with pytest.raises(RedisUnavailable):
        await breaker.call(fail)
    await asyncio.sleep(0.02)
    with pytest.raises(RedisUnavailable):
        await breaker.call(fail)
    assert breaker.state == "open" and not breaker.allow()


async def test_after_a_failure_the_same_request_skips_redis_for_the_cooldown() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown=0.05)

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

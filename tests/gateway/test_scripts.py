"""The script transport (gateway/scripts.py) against a real Redis: a script is never sent twice, a
stalled event loop does not fail replies that arrived, one failed round trip is one breaker failure,
and the redis-py API it is built on still behaves as it relies on (a contract test)."""

from __future__ import annotations

import asyncio
import inspect
import math
import time

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, ConnectionPool

from gateway import CircuitBreaker, RateLimiter, RedisUnavailable
from gateway.ratelimit import parse_limits
from gateway.scripts import lua_sha, lua_source, runner_for, scripts_loaded
from gateway.testing import RedisServer
from tests.gateway.conftest import redis_client
from tests.proxy import DroppingProxy

pytestmark = pytest.mark.anyio
LIMITS = parse_limits("1000/hour")


async def test_a_script_whose_reply_was_lost_is_not_sent_again(redis_server: RedisServer, redis: Redis) -> None:
    async with DroppingProxy(redis_server.port) as proxy:
        client = redis_client(proxy.url)
        limiter = RateLimiter(client, breaker=CircuitBreaker(failure_threshold=10, cooldown=0))
        await limiter.hit("rate_limit:u:GET /x", LIMITS)  # connection up, script loaded
        proxy.drop_next = True
        with pytest.raises(RedisUnavailable):
            await limiter.hit("rate_limit:u:GET /x", LIMITS)  # Redis ran it; the reply was lost
        assert proxy.dropped == 1
        after = await limiter.hit("rate_limit:u:GET /x", LIMITS)  # a fresh connection works at once
        await client.aclose()
    # Three calls reached Redis as three runs: the lost one was not run a second time.
    assert after.states[0].remaining == 997


async def test_replies_that_arrived_during_an_event_loop_stall_count_as_arrived(redis_server: RedisServer) -> None:
    async with DroppingProxy(redis_server.port, delay=0.02) as proxy:  # replies take 20 ms to come back
        client = redis_client(proxy.url, redis_timeout=0.1)
        breaker = CircuitBreaker(failure_threshold=1)
        limiter = RateLimiter(client, breaker=breaker)
        await limiter.hit("rate_limit:warm:GET /x", LIMITS)
        for _ in range(5):
            calls = [asyncio.ensure_future(limiter.hit(f"rate_limit:u{i}:GET /x", LIMITS)) for i in range(20)]
            await asyncio.sleep(0.005)  # the batch is written and its replies are on their way
            time.sleep(0.15)  # noqa: ASYNC251 -- another task blocks the loop past the 100 ms read deadline
            decisions = await asyncio.gather(*calls, return_exceptions=True)
            assert all(not isinstance(d, Exception) and d.admitted for d in decisions), decisions
        assert breaker.state == "closed" and breaker.transitions["open"] == 0
        await client.aclose()


async def test_one_failed_round_trip_is_one_breaker_failure(own_redis_server: RedisServer) -> None:
    client = redis_client(own_redis_server.url, redis_timeout=0.1)
    breaker = CircuitBreaker(failure_threshold=3)
    limiter = RateLimiter(client, breaker=breaker)
    await limiter.hit("rate_limit:warm:GET /x", LIMITS)
    own_redis_server.pause()
    try:
        results = await asyncio.gather(
            *(limiter.hit(f"rate_limit:u{i}:GET /x", LIMITS) for i in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, RedisUnavailable) for r in results)  # one batch, ten callers
        assert breaker.state == "closed"  # one failure of three
    finally:
        own_redis_server.resume()
    assert (await limiter.hit("rate_limit:x:GET /x", LIMITS)).admitted
    await client.aclose()


async def test_error_replies_go_to_their_caller_and_the_rest_of_the_batch_still_reads(redis: Redis) -> None:
    from redis.exceptions import ResponseError

    runner = runner_for(redis)
    good = runner.run("rate_limit", ["rate_limit:a:GET /x"], [1, 1, 20, 5, 60_000])
    bad = runner.run("rate_limit", ["rate_limit:b:GET /x"], [1, 1, 20, "not-a-number", 60_000])
    results = await asyncio.gather(good, bad, return_exceptions=True)
    assert results[0][0] == 1
    assert isinstance(results[1], ResponseError)


async def test_redis_py_contract(redis: Redis) -> None:
    """What gateway/scripts.py relies on, stated once: if a redis-py release changes it, this fails."""
    assert {"command_name"} <= set(inspect.signature(ConnectionPool.get_connection).parameters)
    for name in ("can_read", "pack_commands", "send_packed_command", "read_response", "disconnect"):
        assert callable(getattr(AbstractConnection, name)), name
    assert "check_health" in inspect.signature(AbstractConnection.send_packed_command).parameters
    assert "timeout" in inspect.signature(AbstractConnection.read_response).parameters
    assert "nowait" in inspect.signature(AbstractConnection.disconnect).parameters
    assert hasattr(asyncio.Timeout, "reschedule")

    pool = redis.connection_pool
    connection = await pool.get_connection()
    try:
        assert connection.is_connected and await connection.can_read() is False
        await redis.script_load(lua_source("epoch_init"))
        packed = connection.pack_commands([("EVALSHA", lua_sha("epoch_init"), 1, "contract:epoch"), ("PING",)])
        await connection.send_packed_command(packed, check_health=False)
        epoch = await connection.read_response(timeout=math.inf)
        assert isinstance(epoch, int) and epoch > 1_700_000_000
        assert await connection.read_response(timeout=math.inf) in (b"PONG", "PONG", True)
        assert await connection.can_read() is False  # nothing left over
    finally:
        await pool.release(connection)


async def test_scripts_loaded_reports_every_script_the_gateway_runs_and_only_those(redis: Redis) -> None:
    """With its defaults, ``scripts_loaded`` names no library file (those only exist inside the scripts
    that include them), and once each script has run, it reports every one as loaded."""
    before = await scripts_loaded(redis)
    assert not {"ratelimit", "revocation", "revoke_lib", "session", "epoch"} & set(before)
    assert {"gateway", "auth_check", "rate_limit", "revoke_all", "session_open"} <= set(before)
    for name in before:  # what the first use of each does: EVALSHA, then the script on NOSCRIPT
        assert await redis.script_load(lua_source(name)) == lua_sha(name)
    assert await scripts_loaded(redis) == dict.fromkeys(before, True)

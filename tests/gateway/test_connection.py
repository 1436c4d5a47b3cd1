"""What the gateway asks of the Redis client it is given (gateway/connection.py): a client that would
resend a script call is refused before anything is sent, the options it documents satisfy the check,
and the hiredis packing it offers sends what redis-py would send."""

from __future__ import annotations

import pytest
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway import CircuitBreaker, RateLimiter, RedisUnavailable
from gateway.connection import HiredisPackedConnection, check_client, client_options, use_hiredis_packing
from gateway.ratelimit import parse_limits
from gateway.scripts import ScriptSet, runner_for
from gateway.testing import RedisServer, free_port
from tests.proxy import DroppingProxy

pytestmark = pytest.mark.anyio
LIMITS = parse_limits("1000/hour")


async def test_a_cluster_client_that_retries_is_refused_before_anything_is_sent() -> None:
    cluster = RedisCluster(host="127.0.0.1", port=free_port())  # redis-py's default: 3 retries; never connected
    assert cluster.retry.get_retries() > 0
    with pytest.raises(ValueError, match=r"retries.*client_options\(cluster=True\)"):
        check_client(cluster)
    with pytest.raises(ValueError, match="never sends one twice"):
        runner_for(cluster)
    with pytest.raises(ValueError, match="never sends one twice"):
        ScriptSet("rate_limit").bind(cluster)
    with pytest.raises(ValueError):  # a configuration error, not an outage: no fallback hides it
        await RateLimiter(cluster).hit("rate_limit:u:GET /x", LIMITS)
    await cluster.aclose()


async def test_cluster_clients_built_without_retries_pass() -> None:
    port = free_port()
    for cluster in (
        RedisCluster.from_url(f"redis://127.0.0.1:{port}", **client_options(cluster=True)),
        RedisCluster(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0)),
    ):
        assert cluster.retry.get_retries() == 0
        check_client(cluster)
        assert runner_for(cluster).client is cluster
        await cluster.aclose()


async def test_a_standalone_client_passes_whatever_its_retry_and_still_never_resends_a_script(
    redis_server: RedisServer,
) -> None:
    """Script calls go straight to a pooled connection, so even a client that retries both connection
    errors and timeouts three times runs a script whose reply was lost once."""
    retry = Retry(NoBackoff(), 3, supported_errors=(RedisConnectionError, RedisTimeoutError))
    async with DroppingProxy(redis_server.port) as proxy:
        client = Redis.from_url(proxy.url, retry=retry, socket_timeout=1)
        check_client(client)
        limiter = RateLimiter(client, breaker=CircuitBreaker(failure_threshold=10, cooldown=0))
        await limiter.hit("rate_limit:r:GET /x", LIMITS)
        proxy.drop_next = True
        with pytest.raises(RedisUnavailable):
            await limiter.hit("rate_limit:r:GET /x", LIMITS)
        assert proxy.dropped == 1
        after = await limiter.hit("rate_limit:r:GET /x", LIMITS)
        await client.aclose()
    assert after.states[0].remaining == 997  # three runs for three calls


def test_standalone_options_retry_a_dropped_connection_once_and_never_a_timeout() -> None:
    retry = client_options()["retry"]
    assert retry.get_retries() == 1
    assert RedisConnectionError in retry._supported_errors and RedisTimeoutError not in retry._supported_errors


def test_hiredis_packing_is_installed_on_plain_tcp_pools_only() -> None:
    plain = ConnectionPool.from_url("redis://127.0.0.1:6379/0")
    use_hiredis_packing(plain)
    assert plain.connection_class is HiredisPackedConnection
    kept = [("rediss://127.0.0.1:6379/0", SSLConnection), ("unix:///tmp/redis.sock", UnixDomainSocketConnection)]
    for url, kind in kept:
        pool = ConnectionPool.from_url(url)
        use_hiredis_packing(pool)
        assert pool.connection_class is kind


@pytest.mark.parametrize(
    "command",
    [
        ("EVALSHA", "a" * 40, 2, "rate_limit:{7}:GET /x", b"k\x00\xff", 5, 1.5, "İstanbul"),
        ("CLIENT SETINFO", "LIB-NAME", "redis-py"),
        ("PING",),
    ],
)
def test_hiredis_packing_sends_what_redis_py_would(command: tuple[object, ...]) -> None:
    packed = b"".join(HiredisPackedConnection().pack_command(*command))
    assert packed == b"".join(Connection()._pack_command_python(*command))

"""The gateway's tests build their Redis clients as any app would: with redis-py and the options the
gateway documents (``gateway.connection``), never through the reference service."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from gateway.connection import client_options, use_hiredis_packing


def redis_client(url: str, *, redis_timeout: float = 0.1, connect_timeout: float = 0.5) -> Redis:
    """A standalone client on ``url`` shaped like a production one: short timeouts (``redis_timeout``
    seconds to read a reply), a blocking pool, the gateway's retry, hiredis packing."""
    pool = BlockingConnectionPool.from_url(
        url,
        socket_timeout=redis_timeout,
        socket_connect_timeout=connect_timeout,
        max_connections=100,
        timeout=1.0,
        **client_options(),
    )
    use_hiredis_packing(pool)
    return Redis(connection_pool=pool)

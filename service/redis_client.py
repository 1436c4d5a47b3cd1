"""Build the process's one Redis client from settings (standalone, cluster or sentinel)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel

from gateway.connection import check_client, client_options, use_hiredis_packing
from service.cluster_client import AskingCluster
from service.settings import Settings

#: Seconds a request may wait for a free pooled connection (local contention, not Redis slowness).
POOL_WAIT = 1.0


def redis_options(settings: Settings) -> dict[str, Any]:
    """Short timeouts, and the retry the gateway asks for (``gateway.connection.client_options``: one
    retry on a dropped connection standalone, none on a cluster)."""
    options: dict[str, Any] = {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        **client_options(cluster=settings.redis_mode == "cluster"),
    }
    if settings.redis_username:
        options["username"] = settings.redis_username
    if str(settings.redis_password):
        options["password"] = str(settings.redis_password)
    return options


def describe(settings: Settings) -> str:
    """Where Redis is, for logs: never includes the password."""
    if settings.redis_mode == "sentinel":
        nodes = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
        return f"sentinel {nodes} master={settings.redis_sentinel_master}"
    if settings.redis_url:
        scheme, _, rest = settings.redis_url.partition("://")
        return f"{settings.redis_mode} {scheme}://{rest.rpartition('@')[2]}"
    return f"{settings.redis_mode} redis://{settings.redis_host}:{settings.redis_port}/{settings.redis_db}"


def create_redis(settings: Settings) -> Redis | RedisCluster:
    """The process's one client, checked against what the gateway asks of it (``check_client``)."""
    client = _build(settings)
    check_client(client)
    return client


def _build(settings: Settings) -> Redis | RedisCluster:
    options = redis_options(settings)
    if settings.redis_mode == "cluster":
        url = settings.redis_url or f"redis://{settings.redis_host}:{settings.redis_port}"
        return AskingCluster.from_url(url, **options)  # no retries: see gateway.connection
    if settings.redis_mode == "sentinel":
        if not settings.redis_sentinels:
            raise ValueError("REDIS_SENTINELS is required when REDIS_MODE=sentinel")
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # untyped in some redis-py 8 releases
            list(settings.redis_sentinels),
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
        )
        master_options = {k: v for k, v in options.items() if k not in ("socket_timeout", "socket_connect_timeout")}
        client: Redis = sentinel.master_for(
            settings.redis_sentinel_master,
            socket_timeout=settings.redis_timeout,
            socket_connect_timeout=settings.redis_connect_timeout,
            db=settings.redis_db,
            **master_options,
        )
        return client
    # A blocking pool: a burst of more concurrent requests than connections waits briefly for one
    # instead of failing ("Too many connections"), which would turn load into 503s.
    pool_options = {**options, "max_connections": settings.redis_max_connections, "timeout": POOL_WAIT}
    if settings.redis_url:
        pool = BlockingConnectionPool.from_url(settings.redis_url, **pool_options)
    else:
        pool = BlockingConnectionPool(
            host=settings.redis_host, port=settings.redis_port, db=settings.redis_db, **pool_options
        )
    use_hiredis_packing(pool)  # plain TCP only (TLS and unix sockets keep their own classes)
    return Redis(connection_pool=pool)

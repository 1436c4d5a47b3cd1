"""How components reach the Redis client they were given (a client, or a callable returning one)."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

from gateway.breaker import RedisUnavailable
from gateway.types import RedisClient, RedisSource


def resolve_client(source: RedisSource) -> RedisClient | None:
    """A client given directly (standalone or cluster), or the one a factory returns now."""
    if isinstance(source, (Redis, RedisCluster)):
        return source
    return source()


def require_client(source: RedisSource) -> RedisClient:
    """Like ``resolve_client``, but no client is an outage (``RedisUnavailable``)."""
    client = resolve_client(source)
    if client is None:
        raise RedisUnavailable("no Redis client (is the app's lifespan running?)")
    return client

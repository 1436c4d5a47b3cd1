"""How components reach the Redis client they were given (a client, or a callable returning one), and
what the gateway asks of that client.

The one hard rule: a Lua script call that may have run is never sent again (``gateway.scripts``). On a
standalone or Sentinel client that holds whatever its ``retry`` says, because script calls go straight
to a pooled connection and never through the client's retry. A ``RedisCluster`` sends them through its
pipeline, which resends a failed batch whole as often as its ``retry`` allows, so a cluster client must
not retry: ``check_client`` refuses one that does (the script transport calls it when it first sees a
client), and ``client_options`` gives the retry to build clients with::

    redis = Redis.from_url(url, socket_timeout=0.1, **client_options())
    cluster = RedisCluster.from_url(url, socket_timeout=0.1, **client_options(cluster=True))
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.errors import RedisUnavailable
from gateway.types import RedisClient, RedisSource

__all__ = [
    "HiredisPackedConnection",
    "check_client",
    "client_options",
    "require_client",
    "resolve_client",
    "use_hiredis_packing",
]

_IS_CLIENT: dict[type, bool] = {}


def resolve_client(source: RedisSource) -> RedisClient | None:
    """A client given directly (standalone or cluster), or the one a factory returns now."""
    # isinstance() against redis-py's client classes goes through typing's Protocol machinery (a few
    # microseconds, on every Redis call of every request): decide once per type.
    kind = type(source)
    is_client = _IS_CLIENT.get(kind)
    if is_client is None:
        is_client = _IS_CLIENT[kind] = isinstance(source, (Redis, RedisCluster))
    if is_client:
        return source  # type: ignore[return-value]
    return source()  # type: ignore[operator]


def require_client(source: RedisSource) -> RedisClient:
    """Like ``resolve_client``, but no client is an outage (``RedisUnavailable``)."""
    client = resolve_client(source)
    if client is None:
        raise RedisUnavailable("no Redis client (is the app's lifespan running?)")
    return client


def client_options(*, cluster: bool = False) -> dict[str, Any]:
    """Keyword arguments for redis-py's client constructors (``Redis``, ``BlockingConnectionPool``,
    ``RedisCluster``, and their ``from_url``): the ``retry`` the gateway expects. Add your own timeouts,
    credentials and pool size beside them; keep the ``retry``.

    Standalone and Sentinel (``cluster=False``): one immediate retry of a command whose connection
    dropped (a restarted Redis leaves dead sockets in the pool); timeouts are not retried, so a slow
    Redis costs one timeout. (Script calls never go through this retry.) Cluster: no retries at all;
    MOVED and ASK redirections still work.
    """
    if cluster:
        return {"retry": Retry(NoBackoff(), 0)}
    return {"retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))}


def check_client(client: object) -> None:
    """Raise ``ValueError`` if script calls sent through ``client`` could be sent twice: a client
    without a connection pool (a ``RedisCluster``) whose ``retry`` allows retries. Returns nothing;
    any standalone or Sentinel client passes, whatever its retry."""
    if hasattr(client, "connection_pool"):
        return  # scripts are written to one pooled connection by gateway.scripts, never retried
    retry = getattr(client, "retry", None)
    retries = retry.get_retries() if retry is not None else 0
    if retries:
        raise ValueError(
            f"{type(client).__name__} client retries failed commands ({retries} retries): its pipeline would "
            "resend Lua script calls that may already have run, and the gateway never sends one twice. "
            "Build it with retry=Retry(NoBackoff(), 0), e.g. "
            "RedisCluster.from_url(url, **gateway.connection.client_options(cluster=True))"
        )


try:
    import hiredis

    class HiredisPackedConnection(Connection):
        """A plain TCP connection that packs each command with one call to hiredis's C encoder. Only
        faster (the gateway works with any connection class); ``use_hiredis_packing`` installs it."""

        def pack_command(self, *args: Any) -> list[bytes]:
            """One command as the bytes to send, packed by hiredis."""
            first = args[0]
            if isinstance(first, str) and " " in first:  # "CLIENT SETINFO": the server wants two words
                args = (*first.split(), *args[1:])
            return [hiredis.pack_command(args)]

except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis]); keep working without it
    HiredisPackedConnection = Connection  # type: ignore[misc,assignment]


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """Make ``pool`` open ``HiredisPackedConnection``s if it opens plain TCP ones; TLS, unix-socket and
    Sentinel pools keep their own connection classes. (Not a constructor option on purpose: redis-py's
    ``from_url`` lets a ``connection_class`` argument override the one a ``rediss://`` URL asks for.)"""
    if pool.connection_class is Connection:
        pool.connection_class = HiredisPackedConnection

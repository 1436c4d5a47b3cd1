"""Which Redis servers a tracking channel follows, so that it hears of every change of a key.

Server-assisted invalidation (``CLIENT TRACKING``) is per server: a server pushes the changes it
makes itself, and nothing of what another server does. So the channel (``gateway.nearcache``)
follows every server that may hold a write the client can see:

- **standalone**: the one server the client connects to;
- **Sentinel**: the master and every replica Sentinel reports alive. A replica pushes the changes it
  replicates too, and a replica promoted by a failover was already followed before it accepted its
  first write, so a failover loses no invalidation, however long the channel takes to notice;
- **Cluster**: every node ``CLUSTER NODES`` lists, masters and replicas, including a master that
  serves no slot yet, looked at again every ``ping_interval``. A slot that moves between them is
  pushed as a delete by the one and a write by the other.

A server that joins is followed from the next look on (within ``ping_interval``), and the local
copies are dropped then: a write it took before it was followed was not pushed. What the client has
found on its own is also checked before a value is kept (``covers``): a key whose slot the client now
finds on a server not followed yet, or a Sentinel master not followed yet, is not kept until a look
follows it. So a slot moved to a node within ``ping_interval`` of that node joining the cluster may
be served stale until the next look; never after.

The one place that reads redis-py's topology internals (redis>=8,<9; stated in
tests/gateway/test_topology.py): a client's connection class and keyword options (``_endpoint``),
``SentinelConnectionPool``'s ``sentinel_manager``, ``service_name`` and ``master_address``, and
``RedisCluster``'s ``nodes_manager.get_node_from_slot``.
"""

from __future__ import annotations

import ssl
from typing import Any, NamedTuple

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.credentials import CredentialProvider, UsernamePasswordCredentialProvider

Address = str | tuple[str, int]  # a Unix socket's path, or host and port


class Endpoint(NamedTuple):
    """One server to follow, connected to exactly as the client's own connections connect."""

    address: Address
    tls: ssl.SSLContext | None
    credentials: CredentialProvider | None
    #: Without it nothing is followed (the server writes go to); a replica that does not answer is
    #: left out until the next look.
    required: bool = True
    #: Other names the client may know the server by (a Cluster node's announced host name).
    aliases: tuple[Address, ...] = ()


class Topology:
    """A standalone server: one endpoint, never changes."""

    client: Any
    #: Look at the servers again every ``ping_interval`` (Sentinel and Cluster).
    changes = False

    def __init__(self, client: Redis) -> None:
        self.client = client
        pool = client.connection_pool
        self._endpoint = _endpoint(pool.connection_class, pool.connection_kwargs)

    async def endpoints(self) -> tuple[Endpoint, ...]:
        """The servers to follow now (raises when they cannot be learned)."""
        return (self._endpoint,)

    def covers(self, key: str, followed: frozenset[Address]) -> bool:
        """Whether a value of ``key`` the client reads now comes from a server ``followed`` holds."""
        return True


class SentinelTopology(Topology):
    """The master Sentinel names and the replicas it reports alive."""

    changes = True

    def __init__(self, client: Redis) -> None:
        self.client = client
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        self._pool = pool
        kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
        self._template = _endpoint(_plain_class(pool.connection_class), kwargs)

    async def endpoints(self) -> tuple[Endpoint, ...]:
        manager, name = self._pool.sentinel_manager, self._pool.service_name
        master = await manager.discover_master(name)
        replicas = await manager.discover_slaves(name)
        template = self._template
        found = [template._replace(address=_address(master))]
        found += [template._replace(address=_address(r), required=False) for r in replicas]
        return _unique(found)

    def covers(self, key: str, followed: frozenset[Address]) -> bool:
        master = self._pool.master_address  # where the client's connections go now (None: not yet)
        return master is None or _address(master) in followed


class ClusterTopology(Topology):
    """Every node of the cluster, as ``CLUSTER NODES`` says: masters and replicas, and masters that
    serve no slot yet (a node just added is followed before a slot can move to it). Nodes flagged
    ``fail``, ``handshake`` or ``noaddr`` are left out; masters that serve slots are required."""

    changes = True

    def __init__(self, client: RedisCluster) -> None:
        self.client: Any = client
        self._client = client

    async def endpoints(self) -> tuple[Endpoint, ...]:
        client = self._client
        # redis-py's result callback makes the reply {"host:port": {"flags": "master,...", "slots": [...]}}
        nodes: Any = await client.cluster_nodes()
        node = client.get_default_node() or client.get_nodes()[0]
        template = _endpoint(node.connection_class, node.connection_kwargs)
        remap = getattr(client.nodes_manager, "remap_host_port", None)  # the client's address_remap
        found = []
        for name, info in nodes.items():
            flags = set(str(info.get("flags", "")).split(","))
            if flags & {"fail", "handshake", "noaddr"}:
                continue
            host, _, port_text = str(name).rpartition(":")
            port = int(port_text.split("@")[0])
            names = [(host, port)] + ([(str(info["hostname"]), port)] if info.get("hostname") else [])
            if callable(remap):  # where the client itself connects
                names = [_address(remap(*address)) for address in names]
            serving = "master" in flags and bool(info.get("slots"))
            found.append(template._replace(address=names[0], required=serving, aliases=tuple(names[1:])))
        if not any(endpoint.required for endpoint in found):
            raise ConnectionError("the cluster serves no slots")
        return _unique(found)

    def covers(self, key: str, followed: frozenset[Address]) -> bool:
        client = self._client
        try:
            node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
        except Exception:
            return False
        return (node.host, int(node.port)) in followed


def topology_of(client: Redis | RedisCluster) -> Topology:
    """The servers to follow for ``client``."""
    if isinstance(client, RedisCluster):
        return ClusterTopology(client)
    if isinstance(client.connection_pool, SentinelConnectionPool):
        return SentinelTopology(client)
    return Topology(client)


def _address(pair: Any) -> tuple[str, int]:
    host, port = pair
    return (host.decode() if isinstance(host, bytes) else str(host), int(port))


def _unique(endpoints: list[Endpoint]) -> tuple[Endpoint, ...]:
    """One endpoint per address; required if any listing of it is."""
    merged: dict[Address, Endpoint] = {}
    for endpoint in endpoints:
        seen = merged.get(endpoint.address)
        if seen is not None:
            endpoint = seen._replace(required=seen.required or endpoint.required)
        merged[endpoint.address] = endpoint
    return tuple(merged.values())


def _plain_class(connection_class: type) -> type:
    """Sentinel's connection classes find the master on connect; the endpoint is built from the
    class they extend (TLS or not), with the address Sentinel gives."""
    return SSLConnection if issubclass(connection_class, SSLConnection) else Connection


def _endpoint(connection_class: type, kwargs: dict[str, Any]) -> Endpoint:
    """Where and how the client's own connections connect, so the tracking connection is held to
    exactly the same security: its TLS context and credentials come from a connection that the
    client's connection class builds from the client's options (never connected), so every
    ``ssl_*`` option, with redis-py's own defaults (``ssl_check_hostname`` on, certificates
    required), and ``username``/``password`` or ``credential_provider`` mean what they mean to the
    client.

    It reads redis-py's connection internals (stated in
    tests/gateway/test_nearcache_tls.py::test_redis_py_contract_of_the_tracking_connection): the
    ``host``/``port``/``path``, ``ssl_context`` (a ``RedisSSLContext`` whose ``get()`` is the
    ``ssl.SSLContext`` the client's connections use), ``credential_provider``, ``username`` and
    ``password`` attributes, and the rule of ``on_connect``: a credential provider, else username
    and/or password, else no AUTH."""
    connection = connection_class(**kwargs)
    address: Address
    if isinstance(connection, UnixDomainSocketConnection):
        address = connection.path
    elif isinstance(connection, Connection):
        address = (connection.host, int(connection.port))
    else:
        raise TypeError(f"cannot open a tracking socket like a {type(connection).__name__}")
    tls = connection.ssl_context.get() if isinstance(connection, SSLConnection) else None
    credentials = connection.credential_provider
    if credentials is None and (connection.username or connection.password):
        credentials = UsernamePasswordCredentialProvider(connection.username, connection.password)
    return Endpoint(address, tls, credentials)


__all__ = ["Address", "ClusterTopology", "Endpoint", "SentinelTopology", "Topology", "topology_of"]

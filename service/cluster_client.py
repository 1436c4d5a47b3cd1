"""``AskingCluster``: redis-py's asyncio ``RedisCluster`` with its ``ASK`` redirects made to work.

During a slot's migration the source node answers ``ASK <slot> <host:port>`` for a key already
moved; the client must then send ``ASKING`` and the command **on one connection** of the target.
redis-py 8 (8.2 at least) gets that wrong twice, and each turns a resharding into 5xx answers:

- it looks the target up in its slot table alone, where a node importing its first slot is not yet,
  and fails with ``AttributeError`` (redis/redis-py#4015);
- it sends ``ASKING`` and the command as two commands of the node's pool, which hands out its idle
  connections first in, first out: with two or more idle, they go out on different connections, the
  target answers ``MOVED`` back to the source, and the command fails with "TTL exhausted".

Its ASK branch is the one caller that names the target by position (``self.get_node(*address)``,
pinned in tests/test_upstream_contracts.py); there the node comes back wrapped, and the wrapper
folds the ``ASKING`` into the command that follows it, on one connection. An unknown target is added
to the client's nodes as its ``MOVED`` handling adds one (the next topology refresh keeps or drops
it). Relies on redis-py internals (redis>=8,<9; pinned in tests/test_upstream_contracts.py). Tested:
tests/service/test_cluster.py, tests/service/test_near_cache_cluster.py.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.cluster import PRIMARY


class AskingCluster(RedisCluster):
    """A ``RedisCluster`` whose ``ASK`` redirects reach their target with ``ASKING`` on the same
    connection (see the module docstring)."""

    def get_node(self, *args: Any, **kwargs: Any) -> Any:
        node = super().get_node(*args, **kwargs)
        if len(args) != 2 or kwargs:
            return node  # any other caller: redis-py's own lookup, unchanged
        if node is None:
            host, port = args
            manager = self.nodes_manager
            node = ClusterNode(host, port, PRIMARY, **manager.connection_kwargs)
            manager.set_nodes(manager.nodes_cache, {node.name: node})
        return _AskTarget(node)


class _AskTarget:
    """The node an ``ASK`` names, for redis-py's one retry there: its ``ASKING`` is held and sent with
    the next command, on one connection. Everything else is the node's."""

    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self._asking = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if args == ("ASKING",) and not kwargs:
            self._asking = True
            return True
        if not self._asking:
            return await self._node.execute_command(*args, **kwargs)
        self._asking = False
        kwargs.pop("asking", None)
        node = self._node
        connection = node.acquire_connection()
        try:
            await node.disconnect_if_needed(connection)
            await connection.send_packed_command(connection.pack_commands([("ASKING",), args]))
            await connection.read_response()  # +OK (an error is raised here)
            return await node.parse_response(connection, args[0], **kwargs)
        finally:
            try:
                await node.disconnect_if_needed(connection)
            finally:
                node.release(connection)

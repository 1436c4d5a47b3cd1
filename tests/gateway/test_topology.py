"""Which servers the tracking channel follows (gateway.topology), on real Sentinel and Cluster
setups: every server that may take a write of a key, so no change goes unpushed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

from gateway import NearCache
from gateway.connection import client_options
from gateway.testing import RedisCluster as LocalCluster
from gateway.testing import RedisServer
from tests.gateway.test_nearcache import until
from tests.sentinel import command, sentinel_setup

pytestmark = pytest.mark.anyio


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    with sentinel_setup(tmp_path) as running:
        yield running


def followed_by(port: int) -> int:
    """How many tracking channels (named kapi-near-cache, tracking on) the server at ``port`` has."""
    return sum(
        1 for line in command(port, "CLIENT", "LIST").decode().splitlines()
        if "name=kapi-near-cache" in line and "t" in line.split(" flags=")[1].split(" ")[0]
    )  # fmt: skip


def master_client(sentinel_port: int) -> Redis:
    client: Redis = Sentinel([("127.0.0.1", sentinel_port)]).master_for("mymaster")  # type: ignore[no-untyped-call,unused-ignore]
    return client


async def test_on_sentinel_the_master_and_its_replica_are_followed(
    sentinel: tuple[RedisServer, RedisServer, int],
) -> None:
    master, replica, sentinel_port = sentinel
    redis = master_client(sentinel_port)
    near = NearCache(redis=redis, prefixes=["item:"])
    try:
        await near.start(wait=5)
        assert near.active
        assert followed_by(master.port) == 1 and followed_by(replica.port) == 1
    finally:
        await near.aclose()
        await redis.aclose()


async def test_a_write_the_replica_takes_once_promoted_drops_the_copy_before_anyone_noticed(
    sentinel: tuple[RedisServer, RedisServer, int],
) -> None:
    """The replica is made a master behind Sentinel's back and written to directly: no failover seen,
    no connection killed, the old master still answers. The copy is dropped all the same, pushed by
    the replica, which was followed before it took its first write."""
    _, replica, sentinel_port = sentinel
    redis = master_client(sentinel_port)
    near = NearCache(redis=redis, prefixes=["item:"])
    try:
        await near.start(wait=5)
        await redis.set("item:1", b"old")
        assert near.put("item:1", b"old", near.mark())
        assert near.get("item:1") == b"old"
        assert b"OK" in command(replica.port, "REPLICAOF", "NO", "ONE")
        assert b"OK" in command(replica.port, "SET", "item:1", "new")
        await until(lambda: near.get("item:1") is None)
        assert near.active  # nothing was lost: the channel stays up
    finally:
        await near.aclose()
        await redis.aclose()


async def test_on_a_cluster_every_node_is_followed() -> None:
    with LocalCluster(masters=3) as cluster:
        redis = RedisCluster.from_url(cluster.url, **client_options(cluster=True))
        near = NearCache(redis=redis, prefixes=["item:"])
        try:
            await near.start(wait=5)
            assert near.active
            assert [followed_by(node.port) for node in cluster.nodes] == [1, 1, 1]
            for n in range(30):  # keys in every node's slots are kept, and dropped when written
                key = f"item:{n}"
                await redis.set(key, b"old")
                assert near.put(key, b"old", near.mark()), key
                await redis.set(key, b"new")
                await until(lambda key=key: near.get(key) is None)  # type: ignore[misc]
        finally:
            await near.aclose()
            await redis.aclose()


async def test_refused_fills_ask_for_a_look_at_most_four_times_a_second() -> None:
    """A fill from a server not followed asks for a look at the servers sooner; a deployment where
    every fill is refused (the client's names never match) must not turn that into a storm of
    ``CLUSTER NODES``."""
    with LocalCluster(masters=3) as cluster:
        redis = RedisCluster.from_url(cluster.url, **client_options(cluster=True))
        near = NearCache(redis=redis, prefixes=["item:"])
        try:
            await near.start(wait=5)
            assert near.active
            topology: Any = near._topology
            topology.covers = lambda key, followed: False  # as if the slot table named other hosts

            def looks() -> int:
                stats = [command(node.port, "INFO", "commandstats").decode() for node in cluster.nodes]
                return sum(int(line.split("calls=")[1].split(",")[0]) for text in stats
                           for line in text.splitlines() if line.startswith("cmdstat_cluster|nodes:"))  # fmt: skip

            before, started = looks(), time.monotonic()
            while time.monotonic() - started < 2:
                assert not near.put("item:1", b"x", near.mark())
                await asyncio.sleep(0.001)
            assert looks() - before <= 12  # 2 s at one look per 0.25 s, and the regular ones
        finally:
            await near.aclose()
            await redis.aclose()


def test_redis_py_contract_of_the_topology() -> None:
    """What gateway/topology.py reads from redis-py (redis>=8,<9), stated once."""
    pool = Sentinel([("127.0.0.1", 1)]).master_for("mymaster").connection_pool  # type: ignore[no-untyped-call,unused-ignore]
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "mymaster" and pool.master_address is None
    assert callable(pool.sentinel_manager.discover_master) and callable(pool.sentinel_manager.discover_slaves)
    assert "connection_pool" in pool.connection_kwargs  # left out when the endpoint is built
    cluster = RedisCluster(host="127.0.0.1", port=1)
    assert callable(cluster.nodes_manager.get_node_from_slot)
    assert cluster.keyslot("item:1") == 13307  # CLUSTER KEYSLOT item:1
    assert callable(cluster.cluster_nodes) and callable(cluster.get_default_node)
    assert cluster.nodes_manager.remap_host_port("127.0.0.1", 7000) == ("127.0.0.1", 7000)

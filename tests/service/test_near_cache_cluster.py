"""The near cache, the revocation view and reservations on a real local Redis Cluster (3 masters):
two instances never serve a listing older than a write that has answered, through a node restarted
empty, a resharding of the listing's slot while reads go on and a node that joins and takes it; a
logout through one instance is refused at once by the other; a warm authenticated read costs no
round trip."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import RedisCluster as ClusterClient

from gateway.connection import client_options
from gateway.redis_keys import Keys
from gateway.sessions import SessionStore
from gateway.testing import RedisCluster, RedisServer, free_port
from gateway.tokens import TokenIssuer, new_id
from tests.conftest import TEST_SECRET, bearer, login, own_task
from tests.monitor import client_commands
from tests.service.test_near_cache import (
    WriteReadLoad,
    held_in_memory,
    new_listing,
    two_instances,
    write_one_read_other,
)

pytestmark = pytest.mark.anyio

#: Generous timeouts: three nodes' discovery on a loaded 2-core machine can take longer than the
#: 100 ms a production request allows. Local decisions and the near cache are on, as by default.
SETTINGS: dict[str, Any] = {"redis_mode": "cluster", "redis_timeout": 1, "redis_connect_timeout": 2}


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(masters=3) as running:
        yield running


@pytest.fixture
async def admin(cluster: RedisCluster) -> AsyncIterator[ClusterClient]:
    client = ClusterClient.from_url(cluster.url, **client_options(cluster=True))
    await client.flushall()  # our own cluster, started by this module
    yield client
    await client.aclose()


def command(port: int, *words: str | int) -> bytes:
    """One command to one node, in RESP (the answer's first 64 KiB)."""
    parts = [str(word).encode() for word in words]
    packed = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(packed)
        time.sleep(0.05)
        return sock.recv(65536)


def node_id(port: int) -> str:
    return command(port, "CLUSTER", "MYID").split(b"\r\n")[1].decode()


async def listing_node(admin: ClusterClient, nodes: list[RedisServer], path: str) -> tuple[int, RedisServer]:
    """The slot of the listing's cache entry and the node serving it."""
    key = f"listing:{path.rsplit('/', 1)[1]}"
    assert await admin.exists(key), "the listing's entry is not where this test looks for it"
    slot = admin.keyslot(key)
    node = admin.nodes_manager.get_node_from_slot(slot)
    [server] = [n for n in nodes if n.port == int(node.port)]
    return slot, server


async def until_local(client: httpx.AsyncClient, path: str) -> None:
    """Read until the instance serves ``path`` from memory again (tracking re-armed by itself)."""
    deadline = time.monotonic() + 10
    while (read := await own_task(client.get(path))).headers.get("x-cache") != "HIT-LOCAL":
        assert time.monotonic() < deadline, read.headers
        await asyncio.sleep(0.05)


async def test_a_write_through_one_instance_is_never_followed_by_the_old_listing_on_the_other(
    admin: ClusterClient, cluster: RedisCluster, tmp_path: Path
) -> None:
    async with two_instances(cluster.url, tmp_path, **SETTINGS) as (one, two):
        sources = await write_one_read_other(one, two)
        assert sources.count("HIT-LOCAL") >= 90  # the near cache is really in the path on a cluster


async def test_a_node_restarted_empty_never_serves_stale(
    admin: ClusterClient, cluster: RedisCluster, tmp_path: Path
) -> None:
    async with two_instances(cluster.url, tmp_path, **SETTINGS) as (one, two):
        headers = bearer(await login(one))
        path = await new_listing(one, headers)
        await held_in_memory(two, path)
        _, server = await listing_node(admin, cluster.nodes, path)
        server.restart(empty=True)  # back as itself, with its slots and none of its data
        deadline = time.monotonic() + 20
        while (patched := await own_task(one.patch(path, json={"title": "after"}, headers=headers))).is_error:
            if patched.status_code == 401:  # the login's session lived on that node
                headers = bearer(await own_task(login(one)))
            assert time.monotonic() < deadline, patched.text
            await asyncio.sleep(0.1)
        for _ in range(20):
            read = await own_task(two.get(path))
            assert read.status_code == 200 and read.json()["title"] == "after", read.headers["x-cache"]
        await until_local(two, path)


async def test_a_resharding_of_the_listings_slot_while_reads_continue(
    admin: ClusterClient, cluster: RedisCluster, tmp_path: Path
) -> None:
    async with two_instances(cluster.url, tmp_path, **SETTINGS) as (one, two):
        await move_while_reading(one, two, admin, cluster.nodes, lambda source: next(
            n for n in cluster.nodes if n is not source))  # fmt: skip


async def test_a_node_that_joins_and_takes_the_listings_slot(tmp_path: Path) -> None:
    """A node added to the cluster is followed within a second (the next look at the servers), then
    takes the listing's slot while reads go on."""
    options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
    with RedisCluster(masters=3) as cluster, RedisServer(port=free_port(below=55535), extra_args=options) as joining:
        admin = ClusterClient.from_url(cluster.url, **client_options(cluster=True))
        try:
            async with two_instances(cluster.url, tmp_path, **SETTINGS) as (one, two):
                nodes = [*cluster.nodes, joining]

                async def join(source: RedisServer) -> RedisServer:
                    assert b"OK" in command(cluster.nodes[0].port, "CLUSTER", "MEET", "127.0.0.1", joining.port)
                    new = node_id(joining.port)
                    deadline = time.monotonic() + 20
                    while not (
                        all(new.encode() in command(n.port, "CLUSTER", "NODES") for n in cluster.nodes)
                        and b"cluster_state:ok" in command(joining.port, "CLUSTER", "INFO")
                    ):
                        assert time.monotonic() < deadline, "the new node did not join"
                        await asyncio.sleep(0.1)
                    # Both instances follow it within a look (a second) of its joining, before a slot moves.
                    while command(joining.port, "CLIENT", "LIST").count(b"name=kapi-near-cache") < 2:
                        assert time.monotonic() < deadline, "the new node is not followed"
                        await asyncio.sleep(0.1)
                    return joining

                await move_while_reading(one, two, admin, nodes, join)
        finally:
            await admin.aclose()


async def move_while_reading(
    one: httpx.AsyncClient,
    two: httpx.AsyncClient,
    admin: ClusterClient,
    nodes: list[RedisServer],
    choose: Any,
) -> None:
    """Move the slot of a listing the second instance holds in memory to the node ``choose(source)``
    gives, key by key, while the second instance reads it in a loop and the first writes it before,
    during and after the move: no read started after a write's reply returns an older title."""
    headers = bearer(await login(one))
    path = await new_listing(one, headers)
    await held_in_memory(two, path)
    slot, source = await listing_node(admin, nodes, path)
    target = choose(source)
    if inspect.isawaitable(target):
        target = await target
    reads: list[tuple[float, str, str]] = []
    acknowledged: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            started = time.monotonic()
            read = await own_task(two.get(path))
            if read.status_code == 200:
                reads.append((started, read.json()["title"], read.headers["x-cache"]))
            await asyncio.sleep(0.002)

    async def write(title: str) -> None:
        patched = await own_task(one.patch(path, json={"title": title}, headers=headers))
        assert patched.status_code == 200, patched.text
        acknowledged.append((time.monotonic(), title))

    task = asyncio.create_task(reader())
    await asyncio.sleep(0.2)
    await write("before the move")
    source_id, target_id = node_id(source.port), node_id(target.port)
    assert b"OK" in command(target.port, "CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
    assert b"OK" in command(source.port, "CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
    await write("while importing")
    keys = [k for k in command(source.port, "CLUSTER", "GETKEYSINSLOT", slot, 1000).split(b"\r\n") if b":" in k]
    for key in keys:
        reply = command(source.port, "MIGRATE", "127.0.0.1", target.port, key.decode(), 0, 5000)
        assert b"OK" in reply or b"NOKEY" in reply, reply
        await asyncio.sleep(0.05)
    await write("keys moved")
    for node in nodes:
        if node is source or node is target or node.process is not None:
            assert b"OK" in command(node.port, "CLUSTER", "SETSLOT", slot, "NODE", target_id)
    await write("after the move")
    await asyncio.sleep(0.3)
    await write("last")
    await asyncio.sleep(0.3)
    stop.set()
    await task
    assert (await listing_node(admin, nodes, path))[1] is target
    order = [title for _, title in acknowledged]
    for started, title, source_of in reads:  # a read may see a write still in flight, never an older one
        newest = [order.index(t) for at, t in acknowledged if at < started]
        if newest and title in order:
            assert order.index(title) >= newest[-1], (title, order[newest[-1]], source_of)
    assert len(reads) > 50
    await until_local(two, path)  # the moved entry is held in memory again, now from the target


async def mint(client: Any, user: str, *, cluster: bool) -> str:
    """A token and its login, made as sign-in makes them (the service's secret, a session in Redis)."""
    session_id = new_id()
    pair = TokenIssuer(key=TEST_SECRET).issue_pair(user, session_id=session_id)
    await SessionStore(client, keys=Keys(cluster=cluster)).open(
        user, session_id, refresh_jti=pair.refresh["jti"], ip="127.0.0.1", user_agent="test"
    )
    return pair.access_token


async def metric(client: httpx.AsyncClient, name: str, event: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf'^{name}_total\{{event="{event}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def revocations_refused_at_once(one: httpx.AsyncClient, two: httpx.AsyncClient, redis: Any, *,
                                      cluster: bool, rounds: int = 50) -> None:  # fmt: skip
    """Each round: a token admitted from the second instance's memory, logged out through the first,
    then refused by the second right after the logout's reply."""
    hits, local = (await metric(two, "kapi_revocation_view_events", "hits"),
                   await metric(two, "kapi_rate_limit_reservations", "local"))  # fmt: skip
    admitted = []
    for round_ in range(rounds):
        auth = {"Authorization": f"Bearer {await mint(redis, f'user-{round_}', cluster=cluster)}"}
        for _ in range(6):  # checked in Redis, then the view admits and reservations grow to answer alone
            assert (await two.get("/listings", headers=auth)).status_code == 200
        assert (await one.post("/auth/logout", headers=auth)).status_code == 204
        if (after := await two.get("/listings", headers=auth)).status_code != 401:
            admitted.append((round_, after.status_code))
    assert admitted == []
    # The warm requests were answered from memory, with no round trip (else this proves nothing).
    assert await metric(two, "kapi_revocation_view_events", "hits") - hits >= rounds
    assert await metric(two, "kapi_rate_limit_reservations", "local") - local >= rounds


async def test_a_logout_through_one_instance_is_refused_at_once_by_the_other(
    admin: ClusterClient, cluster: RedisCluster, tmp_path: Path
) -> None:
    async with two_instances(cluster.url, tmp_path, rate_limit="100000/hour", **SETTINGS) as (one, two):
        await revocations_refused_at_once(one, two, admin, cluster=True)


async def test_warm_authenticated_reads_cost_no_round_trip_on_a_cluster(
    admin: ClusterClient, cluster: RedisCluster, tmp_path: Path
) -> None:
    """A hot listing, read 300 times with a token: the gateway's step and the listing both answered in
    the process (the view, a reservation, the near cache), not one or two commands per read."""
    async with two_instances(cluster.url, tmp_path, rate_limit="100000/hour", **SETTINGS) as (one, _):
        headers = bearer(await login(one))
        path = await new_listing(one, headers)
        for _ in range(10):  # warm: the token in the view, budget reserved, the listing in memory
            assert (await one.get(path, headers=headers)).status_code == 200
        async with contextlib.AsyncExitStack() as stack:
            seen = [await stack.enter_async_context(client_commands(node.url)) for node in cluster.nodes]
            sources = [(await one.get(path, headers=headers)).headers["x-cache"] for _ in range(300)]
        assert sources.count("HIT-LOCAL") == 300
        sent = [name for node in seen for name in node.names() if name not in ("CLUSTER", "PING")]
        assert len(sent) <= 15, sent  # the reservations' refills: a script call now and then


def replicates(node: RedisServer, master: RedisServer) -> bool:
    """Whether ``node`` is a replica of ``master`` (its own line of CLUSTER NODES says so)."""
    own = next(line for line in command(node.port, "CLUSTER", "NODES").split(b"\n") if b"myself" in line)
    return f"slave {node_id(master.port)}".encode() in own


async def test_a_masters_failover_under_read_load_never_serves_a_value_older_than_the_new_masters_writes(
    tmp_path: Path,
) -> None:
    """3 masters with a replica each; the master serving the listing is killed (SIGKILL) while one
    instance writes and the other reads: once its replica has taken over, no read started after a
    write it acknowledged returns an older listing, and the listing is served from memory again."""
    with RedisCluster(masters=3, replicas=1) as cluster:
        admin = ClusterClient.from_url(cluster.url, **client_options(cluster=True))
        try:
            async with two_instances(cluster.url, tmp_path, **SETTINGS) as (one, two):
                headers = bearer(await login(one))
                path = await new_listing(one, headers)
                await held_in_memory(two, path)
                _, master = await listing_node(admin, cluster.nodes, path)
                [replica] = [n for n in cluster.nodes if replicates(n, master)]
                async with WriteReadLoad(one, two, path, headers) as load:
                    master.kill()
                    deadline = time.monotonic() + 30
                    while b"role:master" not in command(replica.port, "INFO", "replication"):
                        assert time.monotonic() < deadline, "no failover"
                        await asyncio.sleep(0.05)
                    load.promoted()
                    await load.until_acknowledged(30, within=20)
                assert load.stale() == []
                await until_local(two, path)  # followed again without the dead node
        finally:
            await admin.aclose()

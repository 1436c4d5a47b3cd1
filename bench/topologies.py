"""``python -m bench.topologies``: a warm authenticated read on each Redis topology Kapı supports.

It starts its own Redis setups on 127.0.0.1: a standalone ``redis-server``, a Redis Cluster of three
masters (``gateway.testing.RedisCluster``) and a Sentinel setup (a master, its replica and one
Sentinel), every Redis process pinned to the load generator's core. Against each it starts Kapı
exactly as the ``Procfile``'s ``web:`` line does, twice: with the default settings (near cache,
revocation view and reservations on) and with ``LOCAL_DECISIONS=false NEAR_CACHE=false`` (what a
Cluster or Sentinel deployment ran before those worked there: the gateway's script call and the
listing cache's, two round trips a request). All six share one SQLite database, so they serve the
same listing, and are read with the same token (its login recorded in each topology's Redis).

For each it measures ``GET /listings/{id}`` with ``wrk``, the apps alternating round by round: req/s
(median), p50 and p99, and Redis's own counts over the measured rounds (``INFO commandstats`` on
every node of the topology, before and after each round; Sentinel: the master), divided by the
requests ``wrk`` reports: script calls (EVALSHA) and every command run, those inside scripts too.
``MONITOR`` on the same nodes counts what the app itself sent over sequential requests. Ratios are
against standalone with the default settings, measured in the same round.

It prints a table and writes ``bench/topologies-results.json``. Everything it started is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import (
    SECRET,
    App,
    commit,
    cores,
    ensure_wrk,
    kapi_env,
    log,
    monitored,
    redis_counters,
    run_wrk,
    start,
    stop,
)
from bench.results import machine
from gateway.testing import RedisCluster, RedisServer, find_redis_server, free_port, ping

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "topologies-results.json"
BEFORE = {"LOCAL_DECISIONS": "false", "NEAR_CACHE": "false"}
USER = "bench-topologies"
LISTING = {
    "title": "Az kullanılmış şehir bisikleti, 21 vites",
    "description": "Kadıköy'de elden teslim. Jantlar yeni, frenler bakımlı; kask ve kilit hediye. "
    "Hafta içi akşamları görülebilir, pazarlık payı vardır.",
    "price": "4250.00",
    "currency": "TRY",
    "city": "İstanbul",
}


@dataclass
class Topology:
    """One Redis setup: how Kapı is pointed at it, which nodes Redis's counts are read on, and how a
    login is recorded in it."""

    name: str
    label: str
    env: dict[str, str]
    counted: list[int]  # ports whose INFO and MONITOR count (every node that takes the app's commands)
    session_client: Callable[[], Any]  # a redis.asyncio client that writes to this topology
    stats: dict[str, dict[str, int]] = field(default_factory=dict)


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-cp", core, str(pid)], check=False, stdout=subprocess.DEVNULL)


def inline(port: int, *words: str) -> bytes:
    """One inline command to a server on 127.0.0.1 (the first 64 KiB of its answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall((" ".join(words) + "\r\n").encode())
        time.sleep(0.05)
        return sock.recv(65536)


def wait_for(what: str, predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out waiting for {what}")
        time.sleep(0.1)


@contextmanager
def sentinel_setup(directory: Path, core: str) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    """A master, its replica (linked) and one Sentinel that has met both; all stopped on exit."""
    master = RedisServer(extra_args=["--save", ""]).start()
    replica: RedisServer | None = None
    sentinel: subprocess.Popen[bytes] | None = None
    try:
        replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
        linked = replica.port
        wait_for("the replica's link", lambda: b"master_link_status:up" in inline(linked, "INFO", "replication"))
        port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 5000\nsentinel failover-timeout mymaster 10000\n"
        )
        sentinel = subprocess.Popen([find_redis_server(), str(config), "--sentinel"], stdout=subprocess.DEVNULL)
        wait_for("Sentinel", lambda: ping("127.0.0.1", port))

        def named() -> bytes:
            return inline(port, "SENTINEL", "get-master-addr-by-name", "mymaster")

        wait_for("Sentinel to name the master", lambda: str(master.port).encode() in named())
        for process in (master.process, replica.process, sentinel):
            if process is not None:
                pin(process.pid, core)
        yield master, replica, port
    finally:
        if sentinel is not None:
            sentinel.terminate()
            try:
                sentinel.wait(timeout=10)
            except subprocess.TimeoutExpired:
                sentinel.kill()
                sentinel.wait()
        if replica is not None:
            replica.close()
        master.close()


def setups(stack: ExitStack, workdir: Path, core: str) -> list[Topology]:
    """Start the three Redis setups (stopped when ``stack`` closes)."""
    from redis.asyncio import Redis
    from redis.asyncio import RedisCluster as ClusterClient

    from gateway.connection import client_options

    server = stack.enter_context(RedisServer(extra_args=["--save", ""]))
    assert server.process is not None
    pin(server.process.pid, core)
    log("starting a Redis Cluster of 3 masters")
    cluster = stack.enter_context(RedisCluster(masters=3))
    for node in cluster.nodes:
        assert node.process is not None
        pin(node.process.pid, core)
    log("starting a Sentinel setup (master, replica, one Sentinel)")
    sentinel_dir = workdir / "sentinel"
    sentinel_dir.mkdir()
    master, _, sentinel_port = stack.enter_context(sentinel_setup(sentinel_dir, core))
    return [
        Topology("standalone", "standalone", {"REDIS_URL": server.url}, [server.port],
                 lambda: Redis.from_url(server.url)),
        Topology("cluster", "Cluster (3 masters)", {"REDIS_MODE": "cluster", "REDIS_URL": cluster.url},
                 [node.port for node in cluster.nodes],
                 lambda: ClusterClient.from_url(cluster.url, **client_options(cluster=True))),
        Topology("sentinel", "Sentinel (master + replica)",
                 {"REDIS_MODE": "sentinel", "REDIS_URL": "", "REDIS_SENTINELS": f"127.0.0.1:{sentinel_port}",
                  "REDIS_SENTINEL_MASTER": "mymaster"},
                 [master.port], lambda: Redis.from_url(master.url)),
    ]  # fmt: skip


def build_apps(topologies: list[Topology], database: Path) -> list[App]:
    """Two Kapı apps per topology, as the Procfile starts them: default settings and the path before."""
    apps = []
    for topology in topologies:
        common = {**kapi_env({"JWT_SECRET": SECRET}, database), **topology.env}
        apps += [
            App(topology.name, f"{topology.label}, default settings", "service.main:app", sys.executable,
                common, procfile=True),
            App(f"{topology.name}-before", f"{topology.label}, LOCAL_DECISIONS=false NEAR_CACHE=false",
                "service.main:app", sys.executable, {**common, **BEFORE}, procfile=True),
        ]  # fmt: skip
    return apps


async def open_login(topologies: list[Topology]) -> str:
    """One access token, its login recorded in every topology's Redis (as the OTP login would)."""
    from gateway import SessionStore, TokenIssuer
    from gateway.redis_keys import Keys
    from gateway.tokens import new_id

    sid = new_id()
    pair = TokenIssuer(key=SECRET).issue_pair(USER, session_id=sid)
    for topology in topologies:
        client = topology.session_client()
        try:
            keys = Keys(cluster=topology.name == "cluster")  # as the service lays its keys out there
            await SessionStore(client, keys=keys).open(USER, sid, refresh_jti=pair.refresh["jti"], ip="127.0.0.1",
                                            user_agent="bench")  # fmt: skip
        finally:
            await client.aclose()
    return pair.access_token


def create_listing(app: App, token: str) -> bytes:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=app.url) as client:
        created = client.post("/listings", json=LISTING, headers=headers)
        created.raise_for_status()
        if created.json().get("id") != 1:
            raise SystemExit(f"bench: expected listing 1 in a new database, got {created.text[:200]}")
        return client.get("/listings/1", headers=headers).content


def verify_same_body(apps: list[App], token: str, expected: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for app in apps:
        for _ in range(3):  # fill the topology's Redis, then memory: the last read is a warm one
            response = httpx.get(f"{app.url}/listings/1", headers=headers)
        if response.status_code != 200 or json.loads(response.content) != json.loads(expected):
            raise SystemExit(f"bench: {app.name} answered {response.status_code} {response.content[:200]!r}")
    log(f"every app returns the same {len(expected)}-byte listing with the same token")


def counters(ports: list[int]) -> dict[str, int]:
    """Redis's counts summed over ``ports``: commands run (scripts' own too) and script calls."""
    from redis import Redis

    total = {"commands": 0, "scripts": 0}
    for port in ports:
        client = Redis(host="127.0.0.1", port=port)
        try:
            for name, value in redis_counters(client).items():
                total[name] += value
        finally:
            client.close()
    return total


def sent_per_request(app: App, ports: list[int], token: str, requests: int) -> tuple[float, dict[str, int]]:
    """What the app sent to every counted node over ``requests`` sequential warm reads (MONITOR; not
    commands run inside Lua, connection set-up, PING or INFO, nor the Sentinel's own hellos)."""
    headers = {"Authorization": f"Bearer {token}"}
    with ExitStack() as stack:
        sent = [stack.enter_context(monitored(f"redis://127.0.0.1:{port}/0")) for port in ports]
        with httpx.Client(base_url=app.url) as client:
            for _ in range(requests):
                client.get("/listings/1", headers=headers)
    names: dict[str, int] = {}
    for line in (line for lines in sent for line in lines if "__sentinel__" not in line):
        name = line.split(" ", 2)[1].strip('"').upper()
        names[name] = names.get(name, 0) + 1
    return sum(names.values()) / requests, names


def summarise(apps: list[App], topology_of: dict[str, Topology]) -> dict[str, Any]:
    base = next(app for app in apps if app.name == "standalone")
    base_rps = [r["rps"] for r in base.rounds]
    rows: list[dict[str, Any]] = []
    for app in apps:
        rps = [r["rps"] for r in app.rounds]
        ratios = [a / b for a, b in zip(rps, base_rps, strict=True)]  # each round against its own baseline
        requests = max(1, app.redis_stats["requests"])
        topology = topology_of[app.name]
        rows.append({
            "app": app.name,
            "topology": topology.name,
            "settings": "before" if app.name.endswith("-before") else "default",
            "label": app.label,
            "rps_median": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "ratio_to_standalone": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "p50_ms": statistics.median(r["p50_ms"] for r in app.rounds),
            "p99_ms": statistics.median(r["p99_ms"] for r in app.rounds),
            "p99_max_ms": max(r["p99_ms"] for r in app.rounds),
            "non_2xx": sum(r["non_2xx"] for r in app.rounds),
            "socket_errors": sum(r["socket_errors"] for r in app.rounds),
            "requests_measured": app.redis_stats["requests"],
            "nodes_counted": len(topology.counted),
            "redis_script_calls_per_request": app.redis_stats["scripts"] / requests,
            "redis_commands_per_request": app.redis_stats["commands"] / requests,
            "redis_sent_per_request_monitor": app.redis_per_request,
            "redis_sent_monitor": app.redis_sent,
            "rounds": app.rounds,
        })  # fmt: skip
    by_name = {row["app"]: row for row in rows}
    comparisons = {
        f"{name}_vs_{name}-before": by_name[name]["rps_median"] / by_name[f"{name}-before"]["rps_median"]
        for name in topology_of
        if f"{name}-before" in by_name
    }
    return {"rows": rows, "comparisons": comparisons}


def table(result: dict[str, Any]) -> str:
    """The figures as a Markdown table, one row per app."""
    lines = [
        "| Redis | settings | req/s median (min–max) | × standalone (min–max) | p50 ms | p99 ms "
        "| script calls/req (INFO) | Redis cmds/req (INFO) | sent/req (MONITOR) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    labels = {"default": "default", "before": "LOCAL_DECISIONS=false NEAR_CACHE=false"}
    for row in result["rows"]:
        lines.append(
            f"| {row['label'].split(',')[0]} | {labels[row['settings']]} "
            f"| {row['rps_median']:,.0f} ({row['rps_min']:,.0f}–{row['rps_max']:,.0f}) "
            f"| {row['ratio_to_standalone']:.2f} ({row['ratio_min']:.2f}–{row['ratio_max']:.2f}) "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['redis_script_calls_per_request']:.3f} "
            f"| {row['redis_commands_per_request']:.3f} | {row['redis_sent_per_request_monitor']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.topologies", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--monitor-requests", type=int, default=200)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the harness works")
    parser.add_argument("--out", type=Path, default=OUT, help="where the JSON goes")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.warmup, args.monitor_requests = 1, 1, 1, 30

    measured = commit()  # before any app starts: the tree may move while the bench runs
    wrk = ensure_wrk()
    server_core, load_core = cores()
    apps: list[App] = []
    with tempfile.TemporaryDirectory(prefix="kapi-bench-topologies-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        topologies = setups(stack, workdir, load_core)
        apps = build_apps(topologies, workdir / "kapi.db")
        topology_of = {app.name: t for t in topologies for app in apps if app.name.removesuffix("-before") == t.name}
        for app in apps:
            stack.callback(stop, app)
        for app in apps:  # one at a time: the first creates the database's tables
            start(app, server_core, workdir)
        token = asyncio.run(open_login(topologies))
        body = create_listing(apps[0], token)
        verify_same_body(apps, token, body)
        for app in apps:
            ports = topology_of[app.name].counted
            app.redis_per_request, app.redis_sent = sent_per_request(app, ports, token, args.monitor_requests)
            log(f"{app.name}: {app.redis_per_request:.2f} commands sent per request {app.redis_sent}")
            run_wrk(wrk, load_core, app, token, args.warmup, args.connections)
        for round_number in range(args.rounds):
            for app in apps:
                ports = topology_of[app.name].counted
                before = counters(ports)
                result = run_wrk(wrk, load_core, app, token, args.seconds, args.connections)
                after = counters(ports)
                app.rounds.append(result)
                app.redis_stats["requests"] += int(result["requests"])
                for name in ("commands", "scripts"):
                    app.redis_stats[name] += after[name] - before[name]
                scripts = (after["scripts"] - before["scripts"]) / max(1.0, result["requests"])
                log(f"round {round_number + 1}/{args.rounds} {app.name}: {result['rps']:,.0f} req/s, "
                    f"p99 {result['p99_ms']:.2f} ms, {scripts:.3f} script calls per request")  # fmt: skip
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "commit": measured,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "monitor_requests": args.monitor_requests,
        "listing_bytes": len(body),
        "request": "GET /listings/1 with a bearer token, warm",
        **summarise(apps, topology_of),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print()
    print(", ".join(f"{name.replace('_', ' ')}: {ratio:.2f}×" for name, ratio in report["comparisons"].items()))
    print(f"{report['date']} · {report['machine']} · commit {measured}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

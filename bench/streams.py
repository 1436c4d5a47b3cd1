"""``python -m bench.streams``: long-lived connections under the gate, on the service as the
``Procfile``'s ``web:`` line starts it, with a redis-server of its own.

- **Memory per open stream**: ``--streams`` WebSockets on ``GET /listings/events``, each its own login
  (``--streams / 10`` users, 10 logins each: ``STREAMS_PER_USER``), opened at once; the server's RSS
  before and after, per stream. The baseline in the same run: as many idle keep-alive HTTP
  connections (what any server holds per connection).
- **Revocation to close**: ``--rounds`` times, one stream's token is logged out (``POST /auth/logout``,
  as its client would) and the time from that reply to the close frame reaching the stream's client
  is measured (negative: the close arrived first; Redis pushes the revocation when it runs the
  logout's script, before the reply has travelled back), and from the request's start; every other
  stream must stay open (exactly one is closed per round). The baseline in the same run: the logout
  request's own round trip.

It prints the figures and writes ``bench/streams-results.json`` and the ``streams`` section of
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.harness import SECRET, App, start, stop
from bench.results import machine, write_section
from gateway import SessionStore, TokenIssuer
from gateway.testing import RedisServer
from gateway.tokens import new_id

ROOT = Path(__file__).resolve().parents[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def logins(redis_url: str, count: int) -> list[str]:
    """``count`` access tokens, each of its own login (10 per user), made as another instance would."""
    issuer = TokenIssuer(key=SECRET)
    redis = Redis.from_url(redis_url)
    sessions = SessionStore(redis)
    tokens = []
    try:
        for index in range(count):
            user, sid = f"bench-{index // 10}", new_id()
            pair = issuer.issue_pair(user, session_id=sid)
            await sessions.open(user, sid, refresh_jti=pair.refresh["jti"], ip="127.0.0.1", user_agent="bench")
            tokens.append(pair.access_token)
    finally:
        await redis.aclose()
    return tokens


async def open_streams(url: str, tokens: list[str]) -> list[ClientConnection]:
    async def one(token: str) -> ClientConnection:
        return await connect(f"{url}/listings/events", additional_headers={"Authorization": f"Bearer {token}"})

    opened: list[ClientConnection] = []
    for start_at in range(0, len(tokens), 100):  # in waves: a real fleet does not connect at one instant
        opened += await asyncio.gather(*(one(token) for token in tokens[start_at : start_at + 100]))
    return opened


async def closed(ws: ClientConnection) -> float:
    """When the server's close reached this client (monotonic)."""
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        return time.monotonic()


async def measure(app: App, redis_url: str, streams: int, rounds: int) -> dict[str, Any]:
    assert app.process is not None
    base = app.url
    ws_url = base.replace("http://", "ws://")
    tokens = await logins(redis_url, streams)
    pid = app.process.pid
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/health")).status_code == 200
        idle_before = rss_kib(pid)
        keep_alive = [httpx.AsyncClient(base_url=base) for _ in range(streams // 10)]
        await asyncio.gather(*(client.get("/health") for client in keep_alive))
        idle_after = rss_kib(pid)
        for client in keep_alive:
            await client.aclose()
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        sockets = await open_streams(ws_url, tokens)
        await asyncio.sleep(1.0)
        after = rss_kib(pid)
        watchers = [asyncio.ensure_future(closed(ws)) for ws in sockets]
        latencies, from_request, logout_times = [], [], []
        for round_ in range(rounds):
            victim = round_ * (streams // rounds)
            started = time.monotonic()
            reply = await http.post("/auth/logout", headers={"Authorization": f"Bearer {tokens[victim]}"})
            replied = time.monotonic()
            assert reply.status_code == 204, reply.text
            at = await asyncio.wait_for(asyncio.shield(watchers[victim]), 5)
            latencies.append((at - replied) * 1000)
            from_request.append((at - started) * 1000)
            logout_times.append((replied - started) * 1000)
            await asyncio.sleep(0.05)
            still_open = sum(1 for watcher in watchers if not watcher.done())
            assert still_open == streams - round_ - 1, (
                f"round {round_}: {streams - still_open} closed, expected {round_ + 1}"
            )
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*watchers, return_exceptions=True)
    per_stream = (after - before) / streams
    per_idle = (idle_after - idle_before) / len(keep_alive)
    return {
        "streams": streams,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_stream": round(per_stream, 2),
        "kib_per_idle_http_connection": round(per_idle, 2),
        "revocation_to_close_ms": {
            "p50": round(statistics.median(latencies), 2),
            "p99": round(percentile(latencies, 0.99), 2),
            "max": round(max(latencies), 2),
        },
        "logout_request_to_close_ms": {
            "p50": round(statistics.median(from_request), 2),
            "p99": round(percentile(from_request, 0.99), 2),
        },
        "logout_round_trip_ms": {
            "p50": round(statistics.median(logout_times), 2),
            "p99": round(percentile(logout_times, 0.99), 2),
        },
        "rounds": rounds,
    }


def report(result: dict[str, Any]) -> str:
    """The ``streams`` section of ``bench/RESULTS.md``."""
    close, logout = result["revocation_to_close_ms"], result["logout_round_trip_ms"]
    request = result["logout_request_to_close_ms"]
    rows = [
        (
            f"memory per open WebSocket ({result['streams']} open, each its own login)",
            f"{result['kib_per_stream']} KiB",
            f"{result['kib_per_idle_http_connection']} KiB per idle keep-alive HTTP connection",
        ),
        (
            f"logout reply to close frame at the client, p50 / p99 / max ({result['rounds']} rounds)",
            f"{close['p50']} / {close['p99']} / {close['max']} ms",
            f"the logout's own round trip: {logout['p50']} / {logout['p99']} ms",
        ),
        (
            "logout request sent to close frame at the client, p50 / p99",
            f"{request['p50']} / {request['p99']} ms",
            "(includes the logout's round trip)",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    others = result["streams"] - result["rounds"]
    return (
        "## Long-lived connections (`python -m bench.streams`)\n\n"
        f"{result['machine']}; the service started by the Procfile's `web:` line, its own redis-server.\n\n"
        "| measure | value | baseline in the same run |\n|---|---|---|\n"
        f"{table}\n\nEach round closed exactly the one stream whose token was logged out; "
        f"the {others} others stayed open.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.streams")
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "streams-results.json")
    parser.add_argument("--no-write", action="store_true", help="print only (the smoke run)")
    args = parser.parse_args(argv)
    with RedisServer() as redis, tempfile.TemporaryDirectory() as tmp:
        env = {
            "REDIS_URL": redis.url,
            "JWT_SECRET": SECRET,
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/kapi.db",
            "RATE_LIMIT": "1000000/hour",
            "LOG_LEVEL": "WARNING",
        }
        app = App("kapi", "Kapı (Procfile web: line)", "service.main:app", sys.executable, env=env, procfile=True)
        start(app, os.environ.get("BENCH_SERVER_CORE", "0"), Path(tmp))
        try:
            result = asyncio.run(measure(app, redis.url, args.streams, args.rounds))
        finally:
            stop(app)
    result["machine"] = machine()
    print(json.dumps(result, indent=2))
    if not args.no_write:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        write_section("streams", report(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

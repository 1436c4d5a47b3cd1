"""``python -m bench.ratelimit``: what the limiter costs Redis, and how it decides, against the exact
sliding log it replaced (``bench/legacy/sliding_log.lua``), on a redis-server of its own.

- **Memory**: ``--users`` users each at their limit (``100/hour``) on one endpoint, the limiter's Lua
  driven directly (one script call fills a user with 100 admitted requests spread over the hour, on
  a simulated clock), ``used_memory`` per user and ``MEMORY USAGE`` of one key, old and new.
- **CPU**: script calls per second of each, on users at their limit (the steady state of a busy
  endpoint), alternating rounds, pipelined as the gateway sends them.
- **Accuracy**: traffic shapes over many windows on a simulated clock, through the very same Lua
  library (the clock is the only thing the bench supplies): admitted units, and the most admitted in
  any span of one window, next to what the exact sliding log and a fixed window admit.

It prints the tables and writes ``bench/ratelimit-results.json``.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis import Redis

from bench.results import machine, write_section
from gateway.ratelimit.strategy import BUCKETS
from gateway.scripts import lua_source
from gateway.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]
LEGACY = (ROOT / "bench" / "legacy" / "sliding_log.lua").read_text()

# Both libraries with the clock as an argument: ARGV[1] now_ms, ARGV[2] cost, ARGV[3..] amount, window_ms.
NEW_SIM = (
    lua_source("ratelimit")
    + f"""
return rate_limit(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), {BUCKETS}, {{tonumber(ARGV[3]), tonumber(ARGV[4])}})
"""
)
OLD_SIM = (
    LEGACY
    + """
return rate_limit(KEYS[1], tonumber(ARGV[1]), ARGV[1] .. ':' .. ARGV[5], {tonumber(ARGV[3]), tonumber(ARGV[4])})
"""
)
# Fill one user: `amount` hits spread over the window ending at ARGV[1] (one call, many hits).
FILL = """
local now, amount, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, amount do
  rate_limit(KEYS[1], now - window + math.floor(i * window / amount) - 1, ARGS, {amount, window})
end
return 1
"""
NEW_FILL = lua_source("ratelimit") + FILL.replace("ARGS", f"1, {BUCKETS}")
OLD_FILL = LEGACY + FILL.replace("ARGS", "tostring(i)")
# The production entry point of each, on Redis server time.
NEW_LIVE = lua_source("rate_limit")
OLD_LIVE = (
    LEGACY
    + """
local time = redis.call('TIME')
local now_ms = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
return rate_limit(KEYS[1], now_ms, ARGV[1], {tonumber(ARGV[2]), tonumber(ARGV[3])})
"""
)


def log(message: str) -> None:
    print(f"[bench.ratelimit] {message}", file=sys.stderr, flush=True)


def memory(redis: Redis, users: int, amount: int, window_ms: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    now = int(redis.time()[0]) * 1000
    for name, source in (("sliding log (before)", OLD_FILL), ("sub-window counters (now)", NEW_FILL)):
        redis.flushall()
        base = int(redis.info("memory")["used_memory"])
        script = redis.register_script(source)
        started = time.monotonic()
        with redis.pipeline(transaction=False) as pipe:
            for user in range(users):
                script(keys=[f"rate_limit:{user}:GET /listings/{{listing_id}}"], args=[now, amount, window_ms],
                       client=pipe)  # fmt: skip
                if user % 1000 == 999:
                    pipe.execute()
            pipe.execute()
        used = int(redis.info("memory")["used_memory"]) - base
        one = redis.memory_usage("rate_limit:0:GET /listings/{listing_id}")
        results[name] = {"used_memory_per_user": used / users, "memory_usage_one_key": one,
                         "total_mb": used / 1e6, "seconds": time.monotonic() - started}  # fmt: skip
        log(f"memory, {name}: {used / users:,.0f} B/user ({used / 1e6:,.1f} MB for {users:,})")
    redis.flushall()
    return results


def cpu(redis: Redis, keys: int, calls: int, rounds: int, amount: int, window_s: int) -> dict[str, Any]:
    """Calls/s of each live script on users already at their limit (each call: a refused request)."""
    now = int(redis.time()[0]) * 1000
    scripts = {
        "sliding log (before)": (redis.register_script(OLD_LIVE), redis.register_script(OLD_FILL)),
        "sub-window counters (now)": (redis.register_script(NEW_LIVE), redis.register_script(NEW_FILL)),
    }
    rates: dict[str, list[float]] = {name: [] for name in scripts}
    for name, (_, fill) in scripts.items():
        for k in range(keys):
            fill(keys=[f"cpu:{name[:3]}:{k}"], args=[now, amount, window_s * 1000])
    for _ in range(rounds):
        for name, (live, _) in scripts.items():
            started = time.perf_counter()
            sent = 0
            while sent < calls:
                with redis.pipeline(transaction=False) as pipe:
                    for i in range(500):
                        key = f"cpu:{name[:3]}:{(sent + i) % keys}"
                        if name.startswith("sliding"):
                            live(keys=[key], args=[f"n{sent + i}", amount, window_s * 1000], client=pipe)
                        else:
                            live(keys=[key], args=[1, BUCKETS, amount, window_s * 1000], client=pipe)
                    pipe.execute()
                sent += 500
            rates[name].append(sent / (time.perf_counter() - started))
    result = {name: {"calls_per_second": statistics.median(r), "rounds": r} for name, r in rates.items()}
    for name, r in result.items():
        log(f"cpu, {name}: {r['calls_per_second']:,.0f} calls/s")
    redis.flushall()
    return result


def most_in_any_window(times: list[float], window: float) -> int:
    best, start = 0, 0
    for end in range(len(times)):
        while times[end] - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def exact_log(arrivals: list[float], amount: int, window: float) -> list[float]:
    admitted: list[float] = []
    for t in arrivals:
        if len(admitted) - bisect.bisect_right(admitted, t - window) < amount:
            admitted.append(t)
    return admitted


def fixed_window(arrivals: list[float], amount: int, window: float) -> list[float]:
    admitted, counts = [], {}
    for t in arrivals:
        slot = int(t // window)
        if counts.get(slot, 0) < amount:
            counts[slot] = counts.get(slot, 0) + 1
            admitted.append(t)
    return admitted


def ours(redis: Redis, arrivals: list[float], amount: int, window: float, key: str) -> list[float]:
    script = redis.register_script(NEW_SIM)
    admitted = []
    start = 1_800_000_000_000  # a fixed simulated epoch, ms
    for t in arrivals:
        reply = script(keys=[key], args=[start + int(t * 1000), 1, amount, int(window * 1000)])
        if int(reply[0]):
            admitted.append(t)
    return admitted


SHAPES: dict[str, Callable[[random.Random, int, float, int], list[float]]] = {
    # A full burst just before each window boundary and another just after it: 2x for a fixed window.
    "bursts at window edges": lambda rnd, a, w, n: sorted(
        k * w + side * 0.5 + i * 0.001 for k in range(1, n) for side in (-1, 1) for i in range(a)
    ),
    "steady at 1.5x the rate": lambda rnd, a, w, n: [i * w / (1.5 * a) for i in range(int(1.5 * a * n))],
    "bursts every half window": lambda rnd, a, w, n: sorted(
        k * w / 2 + i * 0.001 for k in range(2 * n) for i in range(a)
    ),
    "random arrivals (Poisson, 1.2x)": lambda rnd, a, w, n: sorted(
        rnd.uniform(0, n * w) for _ in range(int(1.2 * a * n))
    ),
}


def accuracy(redis: Redis, amount: int, window: float, windows: int) -> dict[str, Any]:
    rnd = random.Random(42)
    results: dict[str, Any] = {}
    for shape, make in SHAPES.items():
        arrivals = make(rnd, amount, window, windows)
        exact = exact_log(arrivals, amount, window)
        fixed = fixed_window(arrivals, amount, window)
        new = ours(redis, arrivals, amount, window, f"acc:{shape}")
        results[shape] = {
            "requests": len(arrivals),
            "exact_admitted": len(exact), "ours_admitted": len(new), "fixed_admitted": len(fixed),
            "ours_vs_exact": len(new) / len(exact),
            "most_in_any_window": {"exact": most_in_any_window(exact, window),
                                   "ours": most_in_any_window(new, window),
                                   "fixed": most_in_any_window(fixed, window)},
        }  # fmt: skip
        r = results[shape]
        most = r["most_in_any_window"]
        log(f"accuracy, {shape}: ours {r['ours_admitted']} / exact {r['exact_admitted']} "
            f"(max in a window: ours {most['ours']}, fixed {most['fixed']})")  # fmt: skip
    redis.flushall()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit")
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--cpu-calls", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--windows", type=int, default=50)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "ratelimit-results.json")
    args = parser.parse_args(argv)
    with RedisServer() as server:
        redis = Redis.from_url(server.url)
        report = {
            "buckets": BUCKETS,
            "users": args.users,
            "windows": args.windows,
            "memory": memory(redis, args.users, 100, 3_600_000),
            "cpu": cpu(redis, keys=1000, calls=args.cpu_calls, rounds=args.rounds, amount=100, window_s=3600),
            "accuracy": accuracy(redis, amount=100, window=60.0, windows=args.windows),
        }
        redis.close()
    args.out.write_text(json.dumps(report, indent=2))
    print(tables(report))
    when = datetime.now(UTC).isoformat(timespec="seconds")
    header = (
        "## Rate limiting: Redis memory, CPU and accuracy (`python -m bench.ratelimit`)\n\n"
        f"{when} · {machine()} · its own redis-server; {report['users']:,} users each at 100/hour "
        f"on one endpoint; {BUCKETS} sub-windows per limit.\n\n"
    )
    write_section("ratelimit", header + tables(report), args.out.parent / "RESULTS.md")
    return 0


def tables(report: dict[str, Any]) -> str:
    lines = [f"| limiter | used_memory per user | MEMORY USAGE of one key | total for {report['users']:,} users |"]
    lines.append("|---|---|---|---|")
    for name, r in report["memory"].items():
        per_user, one, total = r["used_memory_per_user"], r["memory_usage_one_key"], r["total_mb"]
        lines.append(f"| {name} | {per_user:,.0f} B | {one:,} B | {total:,.1f} MB |")
    lines += ["", "| limiter | script calls/s (median of rounds) |", "|---|---|"]
    for name, r in report["cpu"].items():
        lines.append(f"| {name} | {r['calls_per_second']:,.0f} |")
    traffic = f"traffic (100 per 60 s, {report['windows']} windows)"
    lines += ["", f"| {traffic} | requests | exact sliding log | ours | fixed window |"
              " most in any 60 s: exact / ours / fixed |", "|---|---|---|---|---|---|"]  # fmt: skip
    for shape, r in report["accuracy"].items():
        m = r["most_in_any_window"]
        counts = (
            f"{r['exact_admitted']:,} | {r['ours_admitted']:,} ({r['ours_vs_exact']:.1%}) | {r['fixed_admitted']:,}"
        )
        lines.append(f"| {shape} | {r['requests']:,} | {counts} | {m['exact']} / {m['ours']} / {m['fixed']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())

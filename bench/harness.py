"""``python -m bench``: measure Kapı against the floor and its peers, all on 127.0.0.1.

It starts its own redis-server, then each app pinned to one core with ``taskset`` while ``wrk`` runs
on the other: Kapı exactly as the ``Procfile``'s ``web:`` line starts it (its access log and metrics
as shipped), with its local decisions (the default) and without (``LOCAL_DECISIONS=false``, the strict
one-trip path), the floor and the peers under uvicorn (1 worker, uvloop, httptools, no access log);
seeds a listing, mints a token, checks every app returns the same listing, warms up, runs several
rounds round-robin across the apps (these machines are noisy: every claim is a ratio within one run),
counts the Redis commands per request from Redis's own statistics (``INFO stats`` and ``INFO
commandstats`` read before and after each app's measured rounds, divided by the requests ``wrk``
reports) and, on 200 sequential requests, with ``MONITOR`` (only what the app sends, not what runs
inside Lua); checks what a caller at a small limit (100/hour) costs per request; and writes
``RESULTS.md``, ``results.json`` and ``results.png``. Everything it started is stopped by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.results import machine, write_section
from gateway.testing import RedisServer, free_port

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
PEERS_VENV = BENCH / ".venv-peers"
SECRET = "bench-secret-bench-secret-bench-secret-0123"
PHONE, CODE = "+905550000001", "123456"
SMALL_PHONE = "+905550000002"  # the caller at a small limit: a user of its own, so no count is shared
NEVER_HIT = "10000000/hour"
SMALL_LIMIT = "100/hour"  # reservations take at most 1 % of a limit: here one unit, one trip per request


@dataclass
class App:
    name: str
    label: str
    module: str
    python: str
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    rounds: list[dict[str, float]] = field(default_factory=list)
    redis_per_request: float = 0.0  # MONITOR: commands the app sent, per sequential request
    redis_sent: dict[str, int] = field(default_factory=dict)  # ... by command name
    redis_stats: dict[str, int] = field(default_factory=lambda: {"requests": 0, "commands": 0, "scripts": 0})
    db_queries_warm: int | None = None
    procfile: bool = False  # started by the Procfile's web: line, as deployed
    cores: str | None = None  # overrides the server core (several workers)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def cores() -> tuple[str, str]:
    """The server's core and the load generator's (and Redis's) core."""
    count = os.cpu_count() or 1
    return ("0", "1") if count >= 2 else ("0", "0")


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if os.geteuid() == 0 and shutil.which("apt-get"):
        log("installing wrk (Debian package)")
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, stdout=subprocess.DEVNULL)
        path = shutil.which("wrk")
        if path is None:
            subprocess.run(["apt-get", "update", "-qq"], check=False)
            subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
            path = shutil.which("wrk")
    if path is None:
        raise SystemExit("bench: wrk is needed (Debian: apt-get install wrk)")
    return path


def ensure_peers() -> str:
    """A separate virtualenv for the peer stacks (their pins clash with Kapı's)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    requirements = BENCH / "requirements-peers.txt"
    if not python.exists():
        log("creating bench/.venv-peers")
        subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    if not stamp.exists() or stamp.read_text() != requirements.read_text():
        log("installing the peer stacks into bench/.venv-peers")
        subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(requirements)], check=True)
        stamp.write_text(requirements.read_text())
    return str(python)


def wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"bench: {url} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"bench: {url} did not start")


def procfile_web(env: dict[str, str]) -> list[str]:
    """The Procfile's ``web:`` command with its ``${NAME:-default}`` expanded from ``env``."""
    line = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    expanded = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m.group(1), m.group(2)), line[4:])
    return shlex.split(expanded)


def start(app: App, server_core: str, workdir: Path) -> None:
    app.port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{BENCH / 'apps'}", **app.env}
    pin = ["taskset", "-c", app.cores or server_core]
    if app.procfile:
        env.update(HOST="127.0.0.1", PORT=str(app.port))
        web = procfile_web(env)
        assert web[0] == "uvicorn", web
        command = [*pin, app.python, "-m", *web]
    else:
        command = [
            *pin, app.python, "-m", "uvicorn", app.module,
            "--host", "127.0.0.1", "--port", str(app.port), "--workers", "1", "--loop", "uvloop",
            "--http", "httptools", "--no-access-log", "--log-level", "warning", "--no-proxy-headers",
        ]  # fmt: skip
    log_file = open(workdir / f"{app.name}.log", "wb")  # noqa: SIM115 (kept open for the process's life)
    app.process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
    wait_http(app.url, app.process)


def stop(app: App) -> None:
    if app.process is not None and app.process.poll() is None:
        app.process.terminate()
        try:
            app.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait()


_LATENCY_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_wrk(output: str) -> dict[str, float]:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    percentiles = {}
    for pct, value, unit in re.findall(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", output, re.M):
        percentiles[pct] = float(value) * _LATENCY_UNITS[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    requests = re.search(r"(\d+) requests in", output)
    errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": rps,
        "requests": float(requests.group(1)) if requests else 0.0,
        "p50_ms": percentiles.get("50", float("nan")),
        "p99_ms": percentiles.get("99", float("nan")),
        "non_2xx": float(non2xx.group(1)) if non2xx else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
    }


def run_wrk(wrk: str, core: str, app: App, token: str, seconds: float, connections: int) -> dict[str, float]:
    command = [
        "taskset", "-c", core, wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
        "-H", f"Authorization: Bearer {token}", f"{app.url}/listings/1",
    ]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


@contextmanager
def monitored(redis_url: str) -> Iterator[list[str]]:
    """Collect, while the block runs, the commands clients send to Redis (``MONITOR``): the list is
    filled on exit, without commands run inside Lua, connection set-up (CLIENT, HELLO), PING and INFO."""
    import threading

    from redis import Redis

    lines: list[str] = []
    sent: list[str] = []
    ready = threading.Event()
    stop_flag = threading.Event()

    def collect() -> None:
        client = Redis.from_url(redis_url)
        with client.monitor() as monitor:
            ready.set()
            while not stop_flag.is_set():
                try:
                    info = monitor.next_command()
                except Exception:
                    break
                lines.append(f"{info['client_type']} {info['command']}")
        client.close()

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    ready.wait(5)
    time.sleep(0.1)
    try:
        yield sent
    finally:
        time.sleep(0.3)
        stop_flag.set()
        # Wake the monitor so the thread can notice the flag.
        Redis.from_url(redis_url).ping()
        thread.join(timeout=5)
    setup = ("PING", "CLIENT", "HELLO", "INFO")
    for line in lines:
        if not line.startswith("lua ") and not line.split(" ", 2)[1].strip('"').upper().startswith(setup):
            sent.append(line)


def monitor_commands(redis_url: str, app: App, token: str, requests: int = 200) -> tuple[float, dict[str, int]]:
    """Run ``requests`` requests while MONITOR collects what the app sends; return commands per request
    and how many of each command were sent."""
    headers = {"Authorization": f"Bearer {token}"}
    with monitored(redis_url) as sent, httpx.Client(base_url=app.url) as client:
        for _ in range(requests):
            client.get("/listings/1", headers=headers)
    names: dict[str, int] = {}
    for line in sent:
        name = line.split(" ", 2)[1].strip('"').upper()
        names[name] = names.get(name, 0) + 1
    return len(sent) / requests, names


def redis_counters(client: Any) -> dict[str, int]:
    """Redis's own counts so far: commands processed (less ``INFO`` itself, which only the harness
    sends) and script calls. Commands a script runs count in both totals, as Redis counts them."""
    info = client.info("stats", "commandstats")
    calls = {key.removeprefix("cmdstat_"): value["calls"] for key, value in info.items() if key.startswith("cmdstat_")}
    scripts = sum(n for name, n in calls.items() if name.startswith(("eval", "fcall")))
    return {"commands": info["total_commands_processed"] - calls.get("info", 0), "scripts": scripts}


def small_limit_check(redis_url: str, app: App, token: str, requests: int = 50) -> dict[str, Any]:
    """A caller at a small limit: after one warm-up read, ``requests`` sequential reads, counted by Redis
    (script calls and commands per request, INFO) and by MONITOR (commands the app sent)."""
    from redis import Redis

    client = Redis.from_url(redis_url)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=app.url) as http:
        http.get("/listings/1", headers=headers).raise_for_status()  # the process's first sight of the token
        with monitored(redis_url) as sent:
            before = redis_counters(client)
            statuses = [http.get("/listings/1", headers=headers).status_code for _ in range(requests)]
            after = redis_counters(client)
    client.close()
    if set(statuses) != {200}:
        raise SystemExit(f"bench: the caller at {SMALL_LIMIT} got {sorted(set(statuses))}")
    return {
        "limit": SMALL_LIMIT,
        "requests": requests,
        "script_calls_per_request": (after["scripts"] - before["scripts"]) / requests,
        "commands_per_request": (after["commands"] - before["commands"]) / requests,
        "monitor_per_request": len(sent) / requests,
    }


def database_loads(kapi: App) -> int:
    """Kapı's count of listing loads from the database (its /metrics)."""
    text = httpx.get(f"{kapi.url}/metrics").text
    match = re.search(r'^kapi_cache_events_total\{event="loads"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else -1


def login(kapi: App, phone: str) -> str:
    """An access token for ``phone`` through the real OTP flow."""
    with httpx.Client(base_url=kapi.url) as client:
        client.post("/auth/otp", json={"phone": phone}).raise_for_status()
        response = client.post("/auth/login/phone", json={"phone": phone, "code": CODE})
        response.raise_for_status()
        return str(response.json()["access_token"])


def mint_token(kapi: App) -> tuple[str, bytes]:
    """Log in through the real OTP flow, create the listing, warm the cache; return token and body."""
    with httpx.Client(base_url=kapi.url) as client:
        client.post("/auth/otp", json={"phone": PHONE}).raise_for_status()
        tokens = client.post("/auth/login/phone", json={"phone": PHONE, "code": CODE}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        listing = {
            "title": "Az kullanılmış şehir bisikleti, 21 vites",
            "description": "Kadıköy'de elden teslim. Jantlar yeni, frenler bakımlı; kask ve kilit hediye. "
            "Hafta içi akşamları görülebilir, pazarlık payı vardır.",
            "price": "4250.00",
            "currency": "TRY",
            "city": "İstanbul",
        }
        client.post("/listings", json=listing, headers=headers).raise_for_status()
        body = client.get("/listings/1", headers=headers).content
    return tokens["access_token"], body


def seed_peers(redis_url: str, body: bytes) -> None:
    from redis import Redis

    client = Redis.from_url(redis_url)
    client.set("listing:1", body)  # peer (a) reads the cached listing with a Redis GET
    client.close()


def verify_same_body(apps: list[App], token: str, expected: bytes) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for app in apps:
        for _ in range(2):  # the second read is the warm one
            response = httpx.get(f"{app.url}/listings/1", headers=headers)
        if response.status_code != 200 or json.loads(response.content) != json.loads(expected):
            raise SystemExit(f"bench: {app.name} answered {response.status_code} {response.content[:200]!r}")
    log(f"every app returns the same {len(expected)}-byte listing")


def summarise(apps: list[App]) -> dict[str, Any]:
    floor = next(app for app in apps if app.name == "floor")
    floor_rps = [r["rps"] for r in floor.rounds]
    rows: list[dict[str, Any]] = []
    for app in apps:
        rps = [r["rps"] for r in app.rounds]
        ratios = [a / b for a, b in zip(rps, floor_rps, strict=True)]  # each round against its own floor
        rows.append({
            "app": app.name,
            "label": app.label,
            "rps_median": statistics.median(rps),
            "rps_min": min(rps),
            "rps_max": max(rps),
            "ratio_to_floor": statistics.median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "p50_ms": statistics.median(r["p50_ms"] for r in app.rounds),
            "p99_ms": statistics.median(r["p99_ms"] for r in app.rounds),
            "p99_max_ms": max(r["p99_ms"] for r in app.rounds),
            "non_2xx": sum(r["non_2xx"] for r in app.rounds),
            "requests_measured": app.redis_stats["requests"],
            # Redis's own counts over the measured rounds (INFO), per request wrk reports: every
            # command Redis ran (those inside scripts too), and the script calls among them.
            "redis_commands_per_request": app.redis_stats["commands"] / max(1, app.redis_stats["requests"]),
            "redis_script_calls_per_request": app.redis_stats["scripts"] / max(1, app.redis_stats["requests"]),
            # MONITOR over sequential requests: what the app itself sent, by command.
            "redis_sent_per_request_monitor": app.redis_per_request,
            "redis_sent_monitor": app.redis_sent,
            "rounds": app.rounds,
        })  # fmt: skip
    by_name = {row["app"]: row for row in rows}
    comparisons = {}
    for local, strict in (("kapi", "kapi-one-trip"), ("kapi-2w", "kapi-one-trip-2w")):
        if local in by_name and strict in by_name:
            comparisons[f"{local}_vs_{strict}"] = by_name[local]["rps_median"] / by_name[strict]["rps_median"]
    for name in ("kapi", "kapi-one-trip", "kapi-redis"):
        for peer in ("slowapi", "fastapi"):
            if name in by_name and peer in by_name:
                comparisons[f"{name}_vs_{peer}"] = by_name[name]["rps_median"] / by_name[peer]["rps_median"]
    return {"rows": rows, "comparisons": comparisons}


def write_outputs(out: Path, summary: dict[str, Any], meta: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({**meta, **summary}, indent=2))
    lines = [
        "## HTTP: the full stack against the floor and the peers (`python -m bench`)",
        "",
        f"{meta['date']} · {meta['machine']} · `wrk -t1 -c{meta['connections']}`, "
        f"{meta['rounds']} rounds × {meta['seconds']} s round-robin after a {meta['warmup']} s warm-up; "
        "each app on one core, wrk and Redis on the other; Kapı started by the Procfile's `web:` line "
        "as deployed (uvicorn; the service's access log and metrics on), the floor and the peers by uvicorn "
        "with uvloop, httptools and no access log.",
        "",
        "`GET /listings/{listing_id}` with a valid bearer token, the same listing JSON from every app, "
        f"a rate limit of {NEVER_HIT} (never hit). "
        "Ratios are medians of per-round ratios to the floor measured in the same round. "
        "Redis per request, from Redis's own statistics (`INFO stats`, `INFO commandstats` before and after "
        "each app's measured rounds, divided by the requests wrk reports): *cmds* counts every command Redis "
        "ran, those inside scripts too; *scripts* counts the script calls (EVALSHA) among them. *sent* is what "
        f"the app itself sent over {meta['monitor_requests']} sequential requests (`MONITOR`, not what runs "
        "inside Lua).",
        "",
        "| app | req/s (median, min–max) | × floor (min–max) | p50 ms | p99 ms "
        "| Redis cmds/req (INFO) | scripts/req (INFO) | sent/req (MONITOR) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['label']} | {row['rps_median']:,.0f} ({row['rps_min']:,.0f}–{row['rps_max']:,.0f}) "
            f"| {row['ratio_to_floor']:.2f} ({row['ratio_min']:.2f}–{row['ratio_max']:.2f}) "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['redis_commands_per_request']:.3f} "
            f"| {row['redis_script_calls_per_request']:.3f} | {row['redis_sent_per_request_monitor']:.2f} |"
        )
    if summary["comparisons"]:
        lines += ["", ", ".join(f"{k.replace('_', ' ')}: {v:.2f}×" for k, v in summary["comparisons"].items()) + "."]
    sent = {row["app"]: row["redis_sent_monitor"] for row in summary["rows"] if row["app"].startswith("kapi")}
    lines += [
        "",
        f"What each Kapı app sent (MONITOR, {meta['monitor_requests']} sequential requests): "
        + "; ".join(f"{name} {dict(sorted(names.items())) or 'nothing'}" for name, names in sent.items())
        + ".",
    ]
    small = meta.get("small_limit")
    if small:
        lines += [
            "",
            f"A caller at a small limit ({small['limit']}; a user of its own, a Kapı process of its own "
            f"as deployed, local decisions on), {small['requests']} sequential warm reads: "
            f"{small['script_calls_per_request']:.2f} script calls and {small['commands_per_request']:.2f} "
            f"commands per request (INFO), {small['monitor_per_request']:.2f} sent per request (MONITOR).",
        ]
    lines += [
        "",
        f"Kapı database loads while measuring (cache warm): {meta['kapi_database_loads_while_measuring']}.",
        "",
        f"Code measured: commit `{meta['commit']}`.",
    ]
    write_section("http", "\n".join(lines), out / "RESULTS.md")
    chart(out / "results.png", summary, meta)


def chart(path: Path, summary: dict[str, Any], meta: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install matplotlib)")
        return
    rows = summary["rows"]
    names = [row["app"] for row in rows]
    figure, (left, right, redis_axis) = plt.subplots(1, 3, figsize=(15, 4.8))
    left.bar(names, [row["rps_median"] for row in rows], color="#3b6ea5")
    left.set_title("requests/s (median, higher is better)")
    for i, row in enumerate(rows):
        left.text(i, row["rps_median"], f"{row['ratio_to_floor']:.2f}×", ha="center", va="bottom", fontsize=9)
    right.bar(names, [row["p99_ms"] for row in rows], color="#c0504d")
    right.set_title("p99 latency, ms (lower is better)")
    per_request = [row["redis_script_calls_per_request"] for row in rows]
    redis_axis.bar(names, per_request, color="#6b8e23")
    redis_axis.set_title("Redis script calls per request (INFO)")
    for i, value in enumerate(per_request):
        redis_axis.text(i, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
    for axis in (left, right, redis_axis):
        axis.tick_params(axis="x", labelrotation=35, labelsize=8)
    figure.suptitle(f"GET /listings/{{id}} with a token · wrk -c{meta['connections']} · {meta['date'][:10]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def kapi_env(common: dict[str, str], database: Path) -> dict[str, str]:
    """Kapı's settings in the bench: a limit never hit, the two test numbers, its own SQLite file."""
    return {**common, "DATABASE_URL": f"sqlite+aiosqlite:///{database}", "RATE_LIMIT": NEVER_HIT,
            "OTP_TEST_NUMBERS": f"{PHONE}:{CODE},{SMALL_PHONE}:{CODE}"}  # fmt: skip


def commit() -> str:
    """The commit measured, marked when the code it runs (gateway/, service/, the Procfile) differs from it."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "gateway", "service", "Procfile"], cwd=ROOT,
                           capture_output=True, text=True)  # fmt: skip
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else "")


def build_apps(
    redis_url: str, listing_file: Path, database: Path, peers_python: str | None, *, workers: bool = False
) -> list[App]:
    common = {"REDIS_URL": redis_url, "JWT_SECRET": SECRET, "BENCH_LISTING_FILE": str(listing_file)}
    apps = [
        App("floor", "floor: bare Starlette, JSON from memory", "floor:app", sys.executable, dict(common)),
        App("kapi", "kapi: full stack as deployed (auth + blacklist + rate limit, near cache, local decisions)",
            "service.main:app", sys.executable, kapi_env(common, database), procfile=True),
        App("kapi-one-trip", "kapi, LOCAL_DECISIONS=false (the strict one-trip path)", "service.main:app",
            sys.executable, {**kapi_env(common, database), "LOCAL_DECISIONS": "false"}, procfile=True),
        App("kapi-redis", "kapi, NEAR_CACHE=false (listing from Redis)", "service.main:app", sys.executable,
            {**kapi_env(common, database), "NEAR_CACHE": "false"}, procfile=True),
    ]  # fmt: skip
    if workers:
        two = {**kapi_env(common, database), "WEB_CONCURRENCY": "2"}
        apps += [
            App("kapi-2w", "kapi, WEB_CONCURRENCY=2 (2 workers sharing both cores with wrk and Redis)",
                "service.main:app", sys.executable, two, procfile=True, cores="0,1"),
            App("kapi-one-trip-2w", "kapi, WEB_CONCURRENCY=2, LOCAL_DECISIONS=false", "service.main:app",
                sys.executable, {**two, "LOCAL_DECISIONS": "false"}, procfile=True, cores="0,1"),
        ]  # fmt: skip
    if peers_python:
        apps += [
            App("slowapi", "peer: Starlette + slowapi + JWT + Redis GET", "peer_slowapi:app", peers_python,
                dict(common)),
            App("fastapi", "peer: FastAPI + fastapi-limiter + fastapi-cache2 + JWT", "peer_fastapi:app", peers_python,
                dict(common)),
        ]  # fmt: skip
    return apps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--no-peers", action="store_true", help="measure only the floor and Kapı")
    parser.add_argument("--workers", action="store_true",
                        help="also Kapı with 2 workers (WEB_CONCURRENCY=2), both paths")  # fmt: skip
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the harness works")
    parser.add_argument("--out", type=Path, default=BENCH, help="where RESULTS.md, results.json, results.png go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 1, 1

    measured = commit()  # before any app starts: the tree may move while the bench runs
    wrk = ensure_wrk()
    peers_python = None if args.no_peers else ensure_peers()
    server_core, load_core = cores()
    workdir = Path(tempfile.mkdtemp(prefix="kapi-bench-"))
    redis = RedisServer(extra_args=["--save", ""])
    redis.start()
    subprocess.run(["taskset", "-cp", load_core, str(redis.process.pid)], check=False, stdout=subprocess.DEVNULL)  # type: ignore[union-attr]
    from redis import Redis

    counters = Redis.from_url(redis.url)  # reads INFO around each measured round
    listing_file = workdir / "listing.json"
    apps = build_apps(redis.url, listing_file, workdir / "kapi.db", peers_python, workers=args.workers)
    try:
        kapi = next(app for app in apps if app.name == "kapi")
        start(kapi, server_core, workdir)
        token, body = mint_token(kapi)
        listing_file.write_bytes(body)
        seed_peers(redis.url, body)
        for app in apps:
            if app is not kapi:
                start(app, server_core, workdir)
        verify_same_body(apps, token, body)
        small_app = App("kapi-small", f"kapi at {SMALL_LIMIT}", "service.main:app", sys.executable,
                        {**kapi.env, "RATE_LIMIT": SMALL_LIMIT}, procfile=True)  # fmt: skip
        try:
            small_token = login(kapi, SMALL_PHONE)
            start(small_app, server_core, workdir)
            small = small_limit_check(redis.url, small_app, small_token)
        finally:
            stop(small_app)
        log(f"a caller at {SMALL_LIMIT}: {small['script_calls_per_request']:.2f} script calls per request (INFO)")
        monitor_requests = 50 if args.smoke else 200
        for app in apps:
            app.redis_per_request, app.redis_sent = monitor_commands(redis.url, app, token, requests=monitor_requests)
            log(f"{app.name}: {app.redis_per_request:.2f} Redis commands sent per request {app.redis_sent}")
            run_wrk(wrk, load_core, app, token, args.warmup, args.connections)
        loads_before = database_loads(kapi)
        for round_number in range(args.rounds):
            for app in apps:
                before = redis_counters(counters)
                result = run_wrk(wrk, load_core, app, token, args.seconds, args.connections)
                after = redis_counters(counters)
                app.rounds.append(result)
                app.redis_stats["requests"] += int(result["requests"])
                for name in ("commands", "scripts"):
                    app.redis_stats[name] += after[name] - before[name]
                log(f"round {round_number + 1}/{args.rounds} {app.name}: {result['rps']:,.0f} req/s, "
                    f"p99 {result['p99_ms']:.2f} ms, {(after['scripts'] - before['scripts']) / result['requests']:.3f} "
                    "script calls per request")  # fmt: skip
        kapi_db_loads = database_loads(kapi) - loads_before
    finally:
        for app in apps:
            stop(app)
        counters.close()
        redis.close()
    summary = summarise(apps)
    meta = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "rounds": args.rounds,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "connections": args.connections,
        "listing_bytes": len(body),
        "kapi_database_loads_while_measuring": kapi_db_loads,
        "monitor_requests": monitor_requests,
        "small_limit": small,
        "commit": measured,
    }
    write_outputs(args.out, summary, meta)
    print((args.out / "RESULTS.md").read_text())
    shutil.rmtree(workdir, ignore_errors=True)
    return 0

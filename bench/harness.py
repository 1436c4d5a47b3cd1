"""``python -m bench``: measure Kapı against the floor and its peers, all on 127.0.0.1.

It starts its own redis-server, then each app pinned to one core with ``taskset`` while ``wrk`` runs
on the other: Kapı exactly as the ``Procfile``'s ``web:`` line starts it (its access log and metrics
as shipped), the floor and the peers under uvicorn (1 worker, uvloop, httptools, no access log);
seeds a listing, mints a
token, checks every app returns the same listing, warms up, runs several rounds round-robin across
the apps (these machines are noisy: every claim is a ratio within one run), counts the Redis
commands each app sends per request (``MONITOR``, leaving out commands run inside Lua), and writes
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
NEVER_HIT = "10000000/hour"


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
    redis_per_request: float = 0.0
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
    errors = re.search(r"Socket errors:.*", output)
    return {
        "rps": rps,
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


def monitor_commands(redis_url: str, app: App, token: str, requests: int = 200) -> float:
    """Run ``requests`` requests while MONITOR collects what the app sends; return commands per request."""
    import threading

    from redis import Redis

    lines: list[str] = []
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
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=app.url) as client:
        for _ in range(requests):
            client.get("/listings/1", headers=headers)
    time.sleep(0.3)
    stop_flag.set()
    # Wake the monitor so the thread can notice the flag.
    Redis.from_url(redis_url).ping()
    thread.join(timeout=5)
    # Connection set-up (CLIENT SETINFO, HELLO) and PINGs are not per-request work.
    setup = ("PING", "CLIENT", "HELLO")
    sent = [
        line for line in lines if not line.startswith("lua ") and not line.split(" ", 2)[1].upper().startswith(setup)
    ]
    return len(sent) / requests


def database_loads(kapi: App) -> int:
    """Kapı's count of listing loads from the database (its /metrics)."""
    text = httpx.get(f"{kapi.url}/metrics").text
    match = re.search(r'^kapi_cache_events_total\{event="loads"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else -1


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
    rows = []
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
            "redis_commands_per_request": app.redis_per_request,
            "rounds": app.rounds,
        })  # fmt: skip
    by_name = {row["app"]: row for row in rows}
    comparisons = {}
    for name in ("kapi", "kapi-redis"):
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
        "`GET /listings/{listing_id}` with a valid bearer token, the same listing JSON from every app. "
        "Ratios are medians of per-round ratios to the floor measured in the same round.",
        "",
        "| app | req/s (median, min–max) | × floor (min–max) | p50 ms | p99 ms | Redis cmds/req |",
        "|---|---|---|---|---|---|",
    ]
    for row in summary["rows"]:
        lines.append(
            f"| {row['label']} | {row['rps_median']:,.0f} ({row['rps_min']:,.0f}–{row['rps_max']:,.0f}) "
            f"| {row['ratio_to_floor']:.2f} ({row['ratio_min']:.2f}–{row['ratio_max']:.2f}) "
            f"| {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['redis_commands_per_request']:.2f} |"
        )
    if summary["comparisons"]:
        lines += ["", ", ".join(f"{k.replace('_', ' ')}: {v:.2f}×" for k, v in summary["comparisons"].items()) + "."]
    lines += ["", f"Kapı database loads while measuring (cache warm): {meta['kapi_database_loads_while_measuring']}."]
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
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.bar(names, [row["rps_median"] for row in rows], color="#3b6ea5")
    left.set_title("requests/s (median, higher is better)")
    for i, row in enumerate(rows):
        left.text(i, row["rps_median"], f"{row['ratio_to_floor']:.2f}×", ha="center", va="bottom", fontsize=9)
    right.bar(names, [row["p99_ms"] for row in rows], color="#c0504d")
    right.set_title("p99 latency, ms (lower is better)")
    figure.suptitle(f"GET /listings/{{id}} with a token · wrk -c{meta['connections']} · {meta['date'][:10]}")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def build_apps(
    redis_url: str, listing_file: Path, database: Path, peers_python: str | None, *, workers: bool = False
) -> list[App]:
    common = {"REDIS_URL": redis_url, "JWT_SECRET": SECRET, "BENCH_LISTING_FILE": str(listing_file)}
    kapi_env = {**common, "DATABASE_URL": f"sqlite+aiosqlite:///{database}", "RATE_LIMIT": NEVER_HIT,
                "OTP_TEST_NUMBERS": f"{PHONE}:{CODE}"}  # fmt: skip
    apps = [
        App("floor", "floor: bare Starlette, JSON from memory", "floor:app", sys.executable, dict(common)),
        App("kapi", "kapi: full stack as deployed (auth + blacklist + rate limit, near cache)", "service.main:app",
            sys.executable, dict(kapi_env), procfile=True),
        App("kapi-redis", "kapi, NEAR_CACHE=false (listing from Redis)", "service.main:app", sys.executable,
            {**kapi_env, "NEAR_CACHE": "false"}, procfile=True),
    ]  # fmt: skip
    if workers:
        apps.append(App("kapi-2w", "kapi, WEB_CONCURRENCY=2 (2 workers sharing both cores with wrk and Redis)",
                        "service.main:app", sys.executable, {**kapi_env, "WEB_CONCURRENCY": "2"}, procfile=True,
                        cores="0,1"))  # fmt: skip
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
    parser.add_argument("--workers", action="store_true", help="also Kapı with 2 workers (WEB_CONCURRENCY=2)")
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the harness works")
    parser.add_argument("--out", type=Path, default=BENCH, help="where RESULTS.md, results.json, results.png go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.warmup = 1, 1, 1

    wrk = ensure_wrk()
    peers_python = None if args.no_peers else ensure_peers()
    server_core, load_core = cores()
    workdir = Path(tempfile.mkdtemp(prefix="kapi-bench-"))
    redis = RedisServer(extra_args=["--save", ""])
    redis.start()
    subprocess.run(["taskset", "-cp", load_core, str(redis.process.pid)], check=False, stdout=subprocess.DEVNULL)  # type: ignore[union-attr]
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
        for app in apps:
            app.redis_per_request = monitor_commands(redis.url, app, token, requests=50 if args.smoke else 200)
            log(f"{app.name}: {app.redis_per_request:.2f} Redis commands per request")
            run_wrk(wrk, load_core, app, token, args.warmup, args.connections)
        loads_before = database_loads(kapi)
        for round_number in range(args.rounds):
            for app in apps:
                result = run_wrk(wrk, load_core, app, token, args.seconds, args.connections)
                app.rounds.append(result)
                log(f"round {round_number + 1}/{args.rounds} {app.name}: {result['rps']:,.0f} req/s, "
                    f"p99 {result['p99_ms']:.2f} ms")  # fmt: skip
        kapi_db_loads = database_loads(kapi) - loads_before
    finally:
        for app in apps:
            stop(app)
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
    }
    write_outputs(args.out, summary, meta)
    print((args.out / "RESULTS.md").read_text())
    shutil.rmtree(workdir, ignore_errors=True)
    return 0

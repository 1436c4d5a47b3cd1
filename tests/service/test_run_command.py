"""The README's run command brings up a redis-server of its own when none is reachable, and stops it; it says
at start which Redis it uses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.testing import RedisServer, free_port, ping

ROOT = Path(__file__).resolve().parents[2]


def test_serve_starts_and_stops_its_own_redis(tmp_path: Path) -> None:
    redis_port, http_port = free_port(), free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_PORT": str(redis_port),
        "PORT": str(http_port),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        "JWT_SECRET": "s" * 40,
    }
    env.pop("REDIS_URL", None)
    (tmp_path / "Procfile").write_text((ROOT / "Procfile").read_text())
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{http_port}/test-redis", timeout=1)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "service did not start"
                time.sleep(0.2)
        assert response.status_code == 200 and response.json()["status"] == "ok"
        assert ping("127.0.0.1", redis_port)
        assert (tmp_path / ".kapi" / "redis" / "appendonlydir").is_dir()  # append-only persistence
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert "starting" in output and "stopped the redis-server it started" in output
    assert "data kept in .kapi/redis" in output
    assert not ping("127.0.0.1", redis_port)


def test_serve_says_it_uses_a_redis_that_was_already_running(tmp_path: Path) -> None:
    """A Redis already answering at the configured address is used, and the first line says so, and that
    its data outlives the run (a newcomer's rate-limit counters did, silently)."""
    http_port = free_port()
    with RedisServer() as redis:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_PORT": str(redis.port),
            "PORT": str(http_port),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
            "JWT_SECRET": "s" * 40,
        }
        env.pop("REDIS_URL", None)
        (tmp_path / "Procfile").write_text("web: python -c 'import time; time.sleep(60)'\n")
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
        assert first == (
            f"kapi: using the Redis already running at localhost:{redis.port} (this command did not start it: "
            "its data, rate-limit counters and revocations included, stays after the run)\n"
        )
        assert ping("127.0.0.1", redis.port)  # not ours to stop


def test_serve_leaves_the_missing_secret_warning_to_the_service(tmp_path: Path) -> None:
    """Without JWT_SECRET the service warns once, when it starts; the run command itself says nothing
    about it (it printed the warning a second time)."""
    with RedisServer() as redis:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "REDIS_URL": redis.url,
            "PORT": str(free_port()),
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        }
        env.pop("JWT_SECRET", None)
        (tmp_path / "Procfile").write_text("web: python -c 'print(\"child started\", flush=True)'\n")
        done = subprocess.run(
            [sys.executable, "-m", "service", "serve"], cwd=tmp_path, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60,
        )  # fmt: skip
    assert "child started" in done.stdout
    assert "JWT_SECRET is not set" not in done.stdout

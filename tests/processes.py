"""Real service processes (uvicorn, as the Procfile runs it) and load-client processes for tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from gateway.testing import free_port
from tests.conftest import TEST_NUMBERS, TEST_SECRET

ROOT = Path(__file__).resolve().parents[1]


def service_env(redis_url: str, database_url: str, **settings: Any) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "JWT_SECRET": TEST_SECRET,
        "OTP_TEST_NUMBERS": TEST_NUMBERS,
        "LOG_LEVEL": "WARNING",
    }
    env.update({key.upper(): str(value) for key, value in settings.items()})
    return env


class ServiceProcess:
    """``uvicorn service.main:app`` on ``host`` (127.0.0.1) and a free port; stopped on exit.
    ``prefix`` goes before the command line: ``["ip", "netns", "exec", name]`` runs the service in a
    network namespace (``ip netns exec`` execs it, so the process is the service's own)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        workers: int = 1,
        cwd: Path | None = None,
        gunicorn: bool = False,
        host: str = "127.0.0.1",
        prefix: Sequence[str] = (),
    ) -> None:
        self.env = dict(env)
        self.host = host
        self.prefix = list(prefix)
        self.port = free_port()
        self.workers = workers
        self.gunicorn = gunicorn
        self.cwd = cwd or ROOT
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.cwd / f"service-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30) -> ServiceProcess:
        command = [
            sys.executable, "-m", "uvicorn", "service.main:app", "--host", self.host, "--port", str(self.port),
            "--no-proxy-headers", "--no-access-log", "--workers", str(self.workers),
            "--http", "service.protocol:HttpProtocol", "--timeout-graceful-shutdown", "10",  # as the Procfile runs it
        ]  # fmt: skip
        if self.gunicorn:
            command = [
                sys.executable, "-m", "gunicorn", "service.main:app", "-k", "service.worker.UvicornWorker",
                "-w", str(self.workers), "-b", f"{self.host}:{self.port}", "--graceful-timeout", "5",
            ]  # fmt: skip
        command = [*self.prefix, *command]
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(command, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"service did not start: {self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_load_clients(
    urls: list[str], *, processes: int, concurrency: int, path: str, token: str, timeout: float = 60
) -> list[int]:
    """``processes`` OS processes each fire ``concurrency`` concurrent GETs, all starting at the same
    instant, spread over ``urls``; returns every status code."""
    start_at = time.time() + 1.5
    command = [sys.executable, "-m", "tests.load_client", json.dumps({
        "urls": urls, "concurrency": concurrency, "path": path, "token": token, "start_at": start_at,
    })]  # fmt: skip
    children = [
        subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE)
        for _ in range(processes)
    ]
    statuses: list[int] = []
    for child in children:
        output, _ = child.communicate(timeout=timeout)
        assert child.returncode == 0
        statuses += json.loads(output)
    return statuses

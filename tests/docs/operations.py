"""Helpers for the operations pages' tests (production, monitoring, troubleshooting): the service
started as the Procfile starts it, on the tests' redis-server, and a page's script run with bash as a
reader runs it (``$BASE`` the service, ``$REDIS_URL`` its Redis, this interpreter's ``python`` and the
Redis tools first on ``PATH``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from redis import Redis

from gateway.testing import find_redis_cli
from tests.processes import ServiceProcess, service_env

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
DOCS = ROOT / "docs"


def flushed(redis_url: str) -> str:
    """The tests' own redis-server, emptied, as a reader's fresh Redis would be."""
    client = Redis.from_url(redis_url)
    client.flushall()
    client.close()
    return redis_url


@contextmanager
def service(redis_url: str, directory: Path, **settings: Any) -> Iterator[ServiceProcess]:
    """The service as the Procfile's ``web:`` line runs it, with its database and log in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    database_url = f"sqlite+aiosqlite:///{directory / 'kapi.db'}"
    with ServiceProcess(service_env(redis_url, database_url, **settings), cwd=directory) as running:
        yield running


def run_script(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``bash docs/examples/<script>`` from the repository root; ``env`` on top of a clean environment
    (no Kapı settings from the caller's shell)."""
    path = EXAMPLES / script
    assert path.is_file(), path
    clean = {key: value for key, value in os.environ.items() if not key.startswith(("REDIS_", "JWT_", "OTP_"))}
    tools = [str(Path(sys.executable).parent), str(Path(find_redis_cli()).parent)]
    clean["PATH"] = os.pathsep.join([*tools, clean.get("PATH", "")])
    clean["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        ["bash", str(path)], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


def page(name: str) -> str:
    """The text of ``docs/<name>``."""
    return (DOCS / name).read_text()

"""docs/how-to/production.md: its scripts (docs/examples/production/) against a Redis set up as the page
says and the service in production mode, and the start-up refusals it shows, as the service prints them."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.testing import RedisServer
from tests.docs.operations import ROOT, flushed, page, run_script, service

PAGE = "how-to/production.md"


def test_check_redis_prints_what_the_page_wants(tmp_path: Path) -> None:
    with RedisServer(appendonly=True, directory=tmp_path) as redis_server:  # as docker-compose.yml runs it
        done = run_script("production/check-redis.sh", REDIS_URL=redis_server.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "maxmemory-policy\nnoeviction\nappendonly\nyes\n"
    assert "```text\nmaxmemory-policy\nnoeviction\nappendonly\nyes\n```" in page(PAGE)


def test_probes_in_production(redis_server: RedisServer, tmp_path: Path) -> None:
    settings = {"env": "production", "jwt_secret": secrets.token_urlsafe(48), "otp_test_numbers": ""}
    with service(flushed(redis_server.url), tmp_path, **settings) as running:
        done = run_script("production/probes.sh", BASE=running.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "health 200\nready 200\ntest-redis 404\n"
    assert "```text\nhealth 200\nready 200\ntest-redis 404\n```" in page(PAGE)


def start_up(directory: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """``uvicorn service.main:app`` as the Procfile runs it, in ``directory``, with these settings only."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REDIS_", "JWT_", "OTP_", "ENV"))}
    env.update(settings, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", "0", "--http", "service.protocol:HttpProtocol"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("settings", "line"),
    [
        ({"ENV": "production"}, "kapi: configuration error: JWT_SECRET is required when ENV=production"),
        (
            {"RATE_LIMIT": "abc"},
            "kapi: configuration error: RATE_LIMIT='abc' is invalid: 'abc' is not a rate limit like '100/hour' or "
            "'5/2second'",
        ),
    ],
)
def test_start_up_refusals_are_the_lines_the_page_shows(settings: dict[str, str], line: str, tmp_path: Path) -> None:
    done = start_up(tmp_path, **settings)
    assert done.returncode == 2
    assert line in done.stderr.splitlines()
    assert line in page(PAGE)


@pytest.mark.parametrize(
    ("secret", "why"),
    [("x" * 31, "at least 32 characters"), ("change-me-please-0123456789-0123456789", "placeholder")],
)
def test_production_refuses_short_and_placeholder_secrets(secret: str, why: str, tmp_path: Path) -> None:
    done = start_up(tmp_path, ENV="production", JWT_SECRET=secret)
    assert done.returncode == 2 and why in done.stderr


def test_the_page_includes_every_production_script() -> None:
    text = page(PAGE)
    for script in sorted((ROOT / "docs/examples/production").glob("*.sh")):
        assert f'--8<-- "docs/examples/production/{script.name}"' in text, script.name
    # The launch line the page shows is the Procfile's.
    procfile = (ROOT / "Procfile").read_text()
    web = re.search(r"^web: (.*)$", procfile, re.M)
    assert web and f"web: {web.group(1)}" in text

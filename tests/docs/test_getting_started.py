"""The getting-started pages, followed literally: each framework's example app started with the page's
``uvicorn`` command and environment, then the page's shell steps (docs/examples/getting-started/) run
in order in one shell, each output compared with what the page shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis import Redis

from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES, ROOT, TUTORIAL_SECRET, Uvicorn, shell_env, walk

STEPS = EXAMPLES / "getting-started"
#: Each page's app and its steps, in the order the page shows them.
PAGES = {
    "fastapi": ("examples.fastapi_app:app", ["anonymous", "token", "limit", "logout", "logout-all"]),
    "starlette": ("examples.starlette_app:app", ["anonymous", "token", "limit", "logout", "logout-all"]),
    "django": ("examples.django_app:app", ["anonymous", "token", "limit", "logout", "logout-all"]),
    "asgi": ("examples.plain_asgi:app", ["anonymous", "token", "logout", "logout-all"]),
}


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The tests' own redis-server, emptied (a reader's Redis starts empty too)."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.mark.parametrize("page", sorted(PAGES))
def test_the_page_works_as_written(page: str, redis_url: str, tmp_path: Path) -> None:
    app, steps = PAGES[page]
    env = {"JWT_SECRET": TUTORIAL_SECRET, "REDIS_URL": redis_url}
    with Uvicorn(app, env, log=tmp_path / "uvicorn.log") as server:
        walk(STEPS / page, steps, shell_env(server.url, **env))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_without_jwt_secret_the_app_says_what_to_set(page: str) -> None:
    app, _ = PAGES[page]
    env = {key: value for key, value in os.environ.items() if key != "JWT_SECRET"}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", app], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "Set JWT_SECRET first: the key your tokens are signed with (a long random string)."

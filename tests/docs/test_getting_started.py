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
from tests.docs.walkthrough import EXAMPLES, ROOT, TUTORIAL_SECRET, Uvicorn, check_shown, run_steps, shell_env, walk
from tests.processes import ServiceProcess, service_env

STEPS = EXAMPLES / "getting-started"
#: What the reference-service page exports before starting the service.
PAGE_TEST_NUMBER = "+905550000001:123456"
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


def test_the_reference_service_page_works_as_written(redis_url: str, tmp_path: Path) -> None:
    """The service started as the Procfile starts it, with the page's OTP_TEST_NUMBERS exported first:
    sign in with the test number, create, read (X-Cache), search (percent-encoded), log out (401)."""
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}", otp_test_numbers=PAGE_TEST_NUMBER)
    with ServiceProcess(env, cwd=tmp_path) as service:
        walk(STEPS / "service", ["sign-in", "create", "read", "search", "logout"], shell_env(service.url))


def test_signing_in_to_a_service_started_without_the_test_number_fails_as_the_page_says(
    redis_url: str, tmp_path: Path
) -> None:
    """The trap the page warns about: started before OTP_TEST_NUMBERS was exported, the sign-in step
    says it failed and why (the code is wrong), instead of a KeyError and a row of 401s."""
    env = service_env(redis_url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}")
    env.pop("OTP_TEST_NUMBERS")
    with ServiceProcess(env, cwd=tmp_path) as service:
        (output,) = run_steps([STEPS / "service" / "sign-in.sh"], shell_env(service.url))
    check_shown(output, STEPS / "service" / "sign-in-without-test-number.out")

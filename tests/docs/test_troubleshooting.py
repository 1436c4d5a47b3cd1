"""docs/how-to/troubleshooting.md: each trap happens as the page says, and its fix works (the scripts in
docs/examples/troubleshooting/, run against the service started as the Procfile starts it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.testing import RedisServer
from tests.docs.operations import ROOT, flushed, page, run_script, service

PAGE = "how-to/troubleshooting.md"
PHONE, CODE = "+905550000001", "123456"  # the page's test number


def test_sign_in_fails_when_the_service_does_not_know_the_test_number(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # The reader exported OTP_TEST_NUMBERS after starting the service: the service has none.
    with service(flushed(redis_server.url), tmp_path, otp_test_numbers="", log_level="INFO") as running:
        done = run_script("troubleshooting/sign-in.sh", BASE=running.url)
        log = running.log.read_text()
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.splitlines()
    assert status == "400"
    answer = json.loads(body)
    assert answer["detail"] == "The code is not right." and answer["tries_left"] == 4
    assert body in page(PAGE)
    # What the page says instead: the code is in the development log.
    assert "WARNING service.otp" in log and "(development: codes are logged, not sent)" in log


def test_with_the_test_number_sign_in_works_and_the_search_needs_encoding(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    with service(flushed(redis_server.url), tmp_path, otp_test_numbers=f"{PHONE}:{CODE}") as running:
        done = run_script("troubleshooting/sign-in.sh", BASE=running.url)
        assert done.returncode == 0, done.stderr
        body, status = done.stdout.splitlines()
        assert status == "200"
        token = json.loads(body)["access_token"]
        listing = {"title": "Bisiklet", "price": "1250.50", "city": "İstanbul"}
        created = httpx.post(f"{running.url}/listings", json=listing, headers={"Authorization": f"Bearer {token}"})
        assert created.status_code == 201

        search = run_script("troubleshooting/search.sh", BASE=running.url)
    assert search.returncode == 0, search.stderr
    refused, *found = search.stdout.splitlines()
    assert refused == "Invalid HTTP request received. (400)"
    assert f"```text\n{refused}\n```" in page(PAGE)
    assert len(found) == 2
    for answer in found:
        items = json.loads(answer)["items"]
        assert [item["city"] for item in items] == ["İstanbul"]


def test_rate_limit_state_outlives_the_service_and_the_fix_clears_it(redis_server: RedisServer, tmp_path: Path) -> None:
    redis_url = flushed(redis_server.url)
    with service(redis_url, tmp_path / "first", rate_limit="2/hour") as first:
        statuses = [httpx.get(f"{first.url}/listings").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    # A new run on the same Redis: still limited, as the page says.
    with service(redis_url, tmp_path / "second", rate_limit="2/hour") as second:
        refused = httpx.get(f"{second.url}/listings")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 3000
        assert refused.json()["violated-policies"] == ["default"]

        keys = run_script("troubleshooting/rate-limit-keys.sh", REDIS_URL=redis_url)
        assert keys.returncode == 0, keys.stderr
        assert "rate_limit:ip:127.0.0.1:GET /listings" in keys.stdout.splitlines()

        cleared = run_script("troubleshooting/clear-my-limits.sh", REDIS_URL=redis_url)
        assert cleared.returncode == 0, cleared.stderr
        assert "deleted rate_limit:ip:127.0.0.1:GET /listings" in cleared.stdout.splitlines()
        time.sleep(1.0)  # a running service repeats a refusal for up to a second without asking Redis
        assert httpx.get(f"{second.url}/listings").status_code == 200


def test_the_messages_the_page_quotes_are_the_ones_printed(tmp_path: Path) -> None:
    text = page(PAGE)
    env = {"PATH": str(Path(sys.executable).parent), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "examples"), "fastapi_app:app"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1 and done.stderr.strip() in text
    production = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app"],
        cwd=tmp_path, env={**env, "ENV": "production"}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert production.returncode == 2 and production.stderr.strip() in text
    development = subprocess.run(
        [sys.executable, "-c", "from service.settings import Settings; Settings.from_environ({}, env_file=None)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert development.returncode == 0 and development.stderr.strip() in text
    assert (tmp_path / ".kapi" / "dev-jwt-secret").is_file()
    for description in [
        "The token's signature does not verify.",
        "The token has expired.",
        "The token has been revoked.",
        "The token was revoked by a log-out on all devices.",
        "The token's session has ended; log in again.",
        "The token predates a reset of the revocation store; log in again.",
        "The token is not in canonical form (base64url without padding, RFC 7515).",
    ]:
        assert description in text
        assert description in _gateway_source()


def test_the_run_commands_lines_are_quoted_as_it_prints_them() -> None:
    text, source = page(PAGE), (ROOT / "service" / "cli.py").read_text()
    for printed in [
        ("kapi: using the Redis already running at ", "(this command did not start it: ", "its data, rate-limit "
         "counters and revocations included, stays after the run)"),
        ("kapi: no Redis reachable at ", "; starting ", "(append-only, data kept in .kapi/redis; stopped when the "
         "service stops)"),
    ]:  # fmt: skip
        for part in printed:
            assert part.strip() in text and part.strip() in source, part


def _gateway_source() -> str:
    return "".join(path.read_text() for path in (ROOT / "gateway").rglob("*.py"))


def test_the_page_includes_every_troubleshooting_script() -> None:
    text = page(PAGE)
    for script in sorted((ROOT / "docs/examples/troubleshooting").glob("*.sh")):
        assert f'--8<-- "docs/examples/troubleshooting/{script.name}"' in text, script.name

"""schemathesis, a tool nobody here wrote, against a real service process with every check on
(`st run …/openapi.json --checks all`, stateful phase included, a valid bearer token, the
session-ending operations left out): the OpenAPI document promises exactly what the service does.
What a JSON Schema cannot express (is this string a phone number?) is in schemathesis.toml."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.testing import RedisServer
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ROOT, ServiceProcess, service_env

#: Operations that would revoke the shared token.
SESSION_ENDING = ("logout", "logout_all", "end_session")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServiceProcess, str]]:
    tmp = Path(tmp_path_factory.mktemp("fuzz"))
    with RedisServer() as redis_server:
        env = service_env(redis_server.url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}", rate_limit="100000/hour")
        with ServiceProcess(env, cwd=tmp) as process:
            httpx.post(f"{process.url}/auth/otp", json={"phone": PHONE_A})
            tokens = httpx.post(f"{process.url}/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
            headers = {"Authorization": f"Bearer {tokens['access_token']}"}
            httpx.post(f"{process.url}/listings", json={"title": "x", "price": "1", "city": "Ankara"}, headers=headers)
            yield process, tokens["access_token"]


@pytest.mark.slow
def test_schemathesis_with_every_check_finds_nothing(service: tuple[ServiceProcess, str]) -> None:
    process, token = service
    st = shutil.which("st") or str(Path(sys.executable).parent / "st")
    excluded = [arg for name in SESSION_ENDING for arg in ("--exclude-operation-id", name)]
    command = [
        st, "run", f"{process.url}/openapi.json", "--checks", "all", "--header", f"Authorization: Bearer {token}",
        *excluded, "--max-examples", "40", "--seed", "20261201", "--workers", "1", "--no-color",
        "--generation-database", "none", "--request-timeout", "10",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "Stateful" in output and "❌" not in output

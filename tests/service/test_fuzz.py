"""Property-based fuzzing driven by the service's own OpenAPI description (schemathesis): against a
real service process, no operation ever answers 500 or breaks its documented response schema."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from gateway.redis_server import RedisServer
from service.app import create_app
from service.settings import Settings
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ServiceProcess, service_env

#: Operations that would revoke the shared token; they are fuzzed without one (and must say 401).
REVOKING = {"logout", "logout_all", "end_session"}


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


# The same document the service serves at /openapi.json, built from its routes.
schema = schemathesis.openapi.from_dict(
    create_app(Settings.from_environ({"JWT_SECRET": "x" * 40}, env_file=None)).state.openapi
)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_500_and_responses_match_their_schema(case: Any, service: tuple[ServiceProcess, str]) -> None:
    process, token = service
    headers = (
        {} if case.operation.definition.raw.get("operationId") in REVOKING else {"Authorization": f"Bearer {token}"}
    )
    case.call_and_validate(
        base_url=process.url, headers=headers, checks=[not_a_server_error, response_schema_conformance]
    )

"""Exact limits across processes: 4 client processes × 60 concurrent requests against 2 service
processes sharing one Redis, with a limit of 100 → exactly 100 admitted and 140 refused."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.testing import RedisServer
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ServiceProcess, run_load_clients, service_env


@pytest.mark.slow
def test_limit_is_exact_across_processes(own_redis_server: RedisServer, tmp_path: Path) -> None:
    # A generous Redis timeout: six busy processes on two cores are slow, and this test is about exactness.
    env = service_env(
        own_redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}", rate_limit="100/hour", redis_timeout=1
    )
    with ServiceProcess(env, cwd=tmp_path) as first, ServiceProcess(env, cwd=tmp_path) as second:
        httpx.post(f"{first.url}/auth/otp", json={"phone": PHONE_A})
        tokens = httpx.post(f"{first.url}/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
        created = httpx.post(
            f"{first.url}/listings",
            json={"title": "Bisiklet", "price": "10", "city": "Ankara"},
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert created.status_code == 201

        statuses = run_load_clients(
            [first.url, second.url], processes=4, concurrency=60, path="/listings/1", token=tokens["access_token"]
        )

    assert Counter(statuses) == {200: 100, 429: 140}

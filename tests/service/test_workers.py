"""Many workers on one Redis: `uvicorn --workers 2` and gunicorn with uvicorn workers. Limits stay
exact, a logout is refused by every worker on the next request, invalidations are seen by all."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from gateway.testing import RedisServer
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ServiceProcess, run_load_clients, service_env


@pytest.mark.slow
@pytest.mark.parametrize("manager", ["uvicorn", "gunicorn"])
def test_two_workers_share_limits_revocations_and_invalidations(
    manager: str, own_redis_server: RedisServer, tmp_path: Path
) -> None:
    env = service_env(own_redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
                      rate_limit="60/hour", redis_timeout=1)  # fmt: skip
    with (
        ServiceProcess(env, workers=2, cwd=tmp_path, gunicorn=manager == "gunicorn") as service,
        httpx.Client(base_url=f"http://127.0.0.1:{service.port}") as client,
    ):
        client.post("/auth/otp", json={"phone": PHONE_A})
        tokens = client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        listing = client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"}, headers=headers)
        path = f"/listings/{listing.json()['id']}"

        statuses = run_load_clients([service.url], processes=2, concurrency=50, path=path,
                                    token=tokens["access_token"])  # fmt: skip
        assert Counter(statuses) == {200: 60, 429: 40}  # exact across the two workers

        # Each new connection may land on either worker: every one of them must agree.
        assert client.patch(path, json={"price": "7"}, headers=headers).status_code == 200
        for _ in range(10):
            with httpx.Client(base_url=service.url) as fresh:
                assert fresh.get(f"{path}?fresh", headers={}).json()["price"] == "7.00"
        assert client.post("/auth/logout", headers=headers).status_code == 204
        for _ in range(10):
            with httpx.Client(base_url=service.url) as fresh:
                assert fresh.get("/auth/session", headers=headers).status_code == 401

"""``python -m service token``: a real access token for scripts and load tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import TEST_SECRET, make_settings, serve

ROOT = Path(__file__).resolve().parents[2]


def mint(redis_server: RedisServer, tmp_path: Path, phone: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        "JWT_SECRET": TEST_SECRET,
    }
    return subprocess.run(
        [sys.executable, "-m", "service", "token", "--phone", phone],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.anyio
async def test_minted_token_is_accepted_by_the_service(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    result = mint(redis_server, tmp_path, "+905550000009")
    assert result.returncode == 0, result.stderr
    access_token = result.stdout.strip()
    async with serve(create_app(make_settings(redis_server.url, tmp_path))) as client:
        headers = {"Authorization": f"Bearer {access_token}"}
        sessions = await client.get("/auth/session", headers=headers)
        assert sessions.status_code == 200
        assert sessions.json()["sessions"][0]["user_agent"] == "python -m service token"
        created = await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"}, headers=headers)
        assert created.status_code == 201


def test_a_bad_phone_number_is_one_clear_line(redis_server: RedisServer, tmp_path: Path) -> None:
    result = mint(redis_server, tmp_path, "12")
    assert result.returncode != 0 and "not a valid phone number" in result.stderr
    assert "Traceback" not in result.stderr

"""The access log: a line per request in the service's log format, with its request id, and never a
token, written in batches."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import bearer, login, make_settings, serve

pytestmark = pytest.mark.anyio


async def test_one_line_per_request_with_its_request_id(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with serve(create_app(make_settings(redis_server.url, tmp_path))) as client:
        tokens = await login(client)
        capsys.readouterr()
        missing = await client.get("/listings/424242", headers=bearer(tokens))
        head = await client.head("/nowhere?x=1")
        await asyncio.sleep(0.25)  # lines are written at most 0.1 s after their request
        err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "kapi.access" in line][-2:]  # (the sign-in's came first)
    rid = missing.headers["x-request-id"]
    assert f"[{rid}]" in lines[0] and '"GET /listings/424242 HTTP/1.1" 404' in lines[0] and lines[0].endswith("ms")
    assert '"HEAD /nowhere?x=1 HTTP/1.1" 404' in lines[1] and head.headers["x-request-id"] in lines[1]
    assert tokens["access_token"] not in err


async def test_json_in_production_and_no_token_even_in_a_url(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(redis_server.url, tmp_path, env="production", jwt_secret="p" * 48)
    async with serve(create_app(settings)) as client:
        capsys.readouterr()
        token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
        await client.get(f"/listings?q=bisiklet&access_token={token}", headers={"Authorization": f"Bearer {token}"})
    err = capsys.readouterr().err  # the lifespan's end flushed what was left
    [line] = [line for line in err.splitlines() if '"kapi.access"' in line]
    entry = json.loads(line)
    assert entry["level"] == "INFO" and entry["status"] == 401 and entry["duration_ms"] >= 0
    assert entry["request_id"] != "-" and entry["time"].endswith("Z")
    assert "GET /listings?q=bisiklet&access_token=[token] HTTP/1.1" in entry["message"]
    assert token not in err


@pytest.mark.parametrize("settings", [{"access_log": False}, {"log_level": "WARNING"}])
async def test_off(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: dict[str, object]
) -> None:
    async with serve(create_app(make_settings(redis_server.url, tmp_path, **settings))) as client:
        await client.get("/health")
    assert "kapi.access" not in capsys.readouterr().err


TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLWJ5dGVzLTAxMjM0NTY3ODk"
SIGNATURE = TOKEN.rsplit(".", 1)[1]


@pytest.mark.parametrize(
    "target",
    [
        f"/listings?access_token={TOKEN.replace('.', '%2E')}",
        f"/listings/{TOKEN.replace('.', '%2e')}",
        f"/listings?auth=Bearer%20{TOKEN.replace('.', '%2E')}",
        f"/listings?auth=Bearer+{TOKEN}",
        f"/listings?t={TOKEN.replace('.', '%252E')}",  # encoded twice
        f"/listings?t=%65%79%4A{TOKEN[3:].replace('.', '%2e')}",  # the prefix encoded too
        f"/listings?auth=B%65arer%20{SIGNATURE}",  # not a JWT: a bearer credential all the same
        "/listings?t=" + "".join(f"%{byte:02x}" for byte in TOKEN.encode()),  # every byte encoded
    ],
)
async def test_no_token_in_the_log_however_the_url_spells_it(
    redis_server: RedisServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    settings = make_settings(redis_server.url, tmp_path, env="production", jwt_secret="p" * 48)
    async with serve(create_app(settings)) as client:
        capsys.readouterr()
        await client.get(target)
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if '"kapi.access"' in line]
    assert "[token]" in json.loads(line)["message"]
    assert SIGNATURE not in err and SIGNATURE.lower() not in err.lower().replace("%", "")

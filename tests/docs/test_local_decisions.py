"""The local-decisions example (docs/examples/local-decisions/app.py) on a real redis-server: once a
token is warm in the revocation view and budget is reserved, a request sends Redis no command at all
(counted by Redis itself, ``INFO commandstats``) and its ``RateLimit`` header still counts down by
one; a revocation, through the app or written by anyone else, refuses the token on its next request."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway import TokenBlacklist, TokenIssuer, TokenVerifier
from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES

pytestmark = pytest.mark.anyio
SECRET = "local-decisions-page-secret-local-decisions"


@pytest.fixture
async def example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> AsyncIterator[Any]:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES / "local-decisions"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    await TokenBlacklist(redis).ensure_epoch()
    await redis.aclose()
    async with module.app.router.lifespan_context(module.app):
        assert module.view.live  # the channel is up: tokens may be admitted from memory
        yield module
    sys.modules.pop("app", None)


@pytest.fixture
async def http(example: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def token(user: str) -> str:
    return TokenIssuer(key=SECRET).issue_pair(user, session_id="s").access_token


async def scripts_run(redis: Redis) -> int:
    """The script calls Redis has run: one per round trip the gateway makes."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval"))


def remaining(response: httpx.Response) -> int:
    return int(response.headers["ratelimit"].split("r=")[1].split(";")[0])


async def test_a_warm_request_sends_redis_nothing(http: httpx.AsyncClient, redis: Redis) -> None:
    auth = {"Authorization": f"Bearer {token('ayse')}"}
    # Warm-up: the first request is checked in Redis; the reservations then grow, 2, 4, ... 128, then
    # 200 units (1 % of the limit) a trip.
    warm = [await http.get("/items", headers=auth) for _ in range(64)]
    assert [response.status_code for response in warm] == [200] * 64
    before = await scripts_run(redis)
    answers = [await http.get("/items", headers=auth) for _ in range(50)]
    # 50 requests, at most one round trip: up to 200 units are taken at a time, more once half are spent.
    assert await scripts_run(redis) - before <= 1
    assert [response.status_code for response in answers] == [200] * 50
    # One process: Redis's remaining plus what it holds is what is left, exactly.
    assert [remaining(response) for response in warm + answers] == list(range(19_999, 19_999 - 114, -1))


async def test_a_revocation_refuses_the_warm_token_at_once(http: httpx.AsyncClient, redis: Redis) -> None:
    user_token = token("emre")
    auth = {"Authorization": f"Bearer {user_token}"}
    for _ in range(3):
        assert (await http.get("/items", headers=auth)).status_code == 200  # warm: decided locally
    # Revoked by someone else (another instance, a script): the next request is refused.
    claims = TokenVerifier(key=SECRET).verify(user_token)
    assert await TokenBlacklist(redis).revoke(claims) > 0
    assert (await http.get("/items", headers=auth)).status_code == 401

    other = {"Authorization": f"Bearer {token('can')}"}
    for _ in range(3):
        assert (await http.get("/items", headers=other)).status_code == 200
    assert (await http.post("/logout", headers=other)).status_code == 204  # through the app itself
    refused = await http.get("/items", headers=other)
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The token has been revoked."

"""The rate-limits how-to (docs/examples/rate-limits/app.py): per-route limits with @limit, tiers
chosen from a claim, cost, a per-address override, an exempt route and shadow mode, as the page
shows them."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway import TokenBlacklist, TokenIssuer
from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES

pytestmark = pytest.mark.anyio
SECRET = "rate-limits-page-secret-rate-limits-page"


@pytest.fixture
async def http(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES / "rate-limits"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    await TokenBlacklist(redis).ensure_epoch()
    await redis.aclose()
    async with module.app.router.lifespan_context(module.app):
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield client
    sys.modules.pop("app", None)


def bearer(user: str, **claims: Any) -> dict[str, str]:
    token = TokenIssuer(key=SECRET).issue_pair(user, session_id="s", extra=claims).access_token
    return {"Authorization": f"Bearer {token}"}


def policy(response: httpx.Response) -> tuple[str, str]:
    return response.headers["ratelimit-policy"], response.headers["ratelimit"].split(";t=")[0]


async def test_tiers_pick_the_limits_of_routes_without_their_own(http: httpx.AsyncClient) -> None:
    assert policy(await http.get("/items", headers=bearer("ayse"))) == ('"default";q=100;w=3600', '"default";r=99')
    assert policy(await http.get("/items", headers=bearer("emre", tier="pro"))) == (
        '"pro";q=1000;w=3600',
        '"pro";r=999',
    )
    gold = await http.get("/items", headers=bearer("can", tier="gold"))
    assert gold.headers["ratelimit-policy"] == '"gold-1s";q=10;w=1, "gold-3600s";q=5000;w=3600'
    assert gold.headers["ratelimit-limit"] == "10"  # the older trio shows the tightest limit
    # A route's own limit wins over the tier.
    assert policy(await http.get("/search", headers=bearer("deniz", tier="pro")))[0] == '"GET /search";q=10;w=60'


async def test_a_search_costs_five_units(http: httpx.AsyncClient) -> None:
    headers = bearer("ayse")
    first, second, third = [await http.get("/search", headers=headers) for _ in range(3)]
    assert policy(first) == ('"GET /search";q=10;w=60', '"GET /search";r=5')
    assert policy(second)[1] == '"GET /search";r=0'
    assert third.status_code == 429 and "retry-after" in third.headers
    assert third.json()["violated-policies"] == ["GET /search"]


async def test_shadow_mode_refuses_nothing_and_says_what_it_would_do(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    headers = bearer("ayse")
    with caplog.at_level("WARNING", logger="gateway.ratelimit"):
        answers = [await http.post("/export", headers=headers) for _ in range(5)]
    assert caplog.messages == ["rate limit (shadow) POST /export would refuse POST /export"] * 2
    assert [answer.status_code for answer in answers] == [200] * 5
    assert policy(answers[-1]) == ('"POST /export";q=3;w=60', '"POST /export";r=0')
    assert "retry-after" not in answers[-1].headers


async def test_login_counts_per_address_and_health_is_exempt(http: httpx.AsyncClient) -> None:
    anonymous = await http.post("/login")
    signed_in = await http.post("/login", headers=bearer("ayse"))
    assert policy(anonymous) == ('"login";q=10;w=60', '"login";r=9')
    assert policy(signed_in)[1] == '"login";r=8'  # the same address, whoever is signed in
    health = await http.get("/health")
    assert health.status_code == 200 and "ratelimit" not in health.headers

"""Browser clients: CORS_ORIGINS turns on Starlette's CORSMiddleware outside the gateway, so preflights
are answered before authentication and rate limiting, and browser code can read the gateway's headers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from gateway.ratelimit import Limit
from service.app import EXPOSED_HEADERS, create_app
from tests.conftest import bearer, login, serve

pytestmark = pytest.mark.anyio
ORIGIN = "https://app.kapi.test"


@pytest.fixture
async def browser(settings: Any, redis: Redis) -> Any:
    async with serve(create_app(replace(settings, cors_origins=(ORIGIN,), rate_limit=(Limit(3, 3600),)))) as client:
        yield client


def preflight(method: str = "POST", origin: str = ORIGIN) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
    }


async def test_a_preflight_is_answered_before_auth_and_limits(browser: httpx.AsyncClient, redis: Redis) -> None:
    for _ in range(5):  # more than the limit of 3: preflights are not counted
        answer = await browser.options("/listings", headers=preflight())
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "POST" in answer.headers["access-control-allow-methods"]
    assert [key async for key in redis.scan_iter("rate_limit:*")] == []


async def test_browser_code_can_read_the_gateways_headers(browser: httpx.AsyncClient) -> None:
    tokens = await login(browser)
    created = await browser.post(
        "/listings",
        json={"title": "Masa", "price": "10", "city": "İzmir"},
        headers={**bearer(tokens), "Origin": ORIGIN},
    )
    assert created.status_code == 201 and created.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip().lower() for h in created.headers["access-control-expose-headers"].split(",")}
    assert {h.lower() for h in EXPOSED_HEADERS} <= exposed
    assert {"ratelimit", "ratelimit-policy", "retry-after", "etag", "x-cache", "x-request-id", "location",
            "www-authenticate"} <= exposed  # fmt: skip


async def test_an_unknown_origin_gets_no_grant(browser: httpx.AsyncClient) -> None:
    refused = await browser.options("/listings", headers=preflight(origin="https://evil.test"))
    assert "access-control-allow-origin" not in refused.headers
    simple = await browser.get("/listings", headers={"Origin": "https://evil.test"})
    assert simple.status_code == 200 and "access-control-allow-origin" not in simple.headers


async def test_no_cors_headers_by_default(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/listings", headers={"Origin": ORIGIN})
    assert not any(name.startswith("access-control-") for name in response.headers)

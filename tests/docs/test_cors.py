"""The CORS how-to (docs/examples/cors/app.py): a preflight is answered before the gateway (no token
needed, no budget spent), a listed origin may read the rate-limit headers, an unlisted one gets no
grant."""

from __future__ import annotations

import importlib
import sys

import httpx
import pytest
from redis.asyncio import Redis

from gateway import TokenBlacklist, TokenIssuer
from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES

pytestmark = pytest.mark.anyio
SECRET = "cors-page-secret-cors-page-secret"
ORIGIN = "https://app.example.com"


async def test_preflights_and_exposed_headers(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES / "cors"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    await TokenBlacklist(redis).ensure_epoch()
    token = TokenIssuer(key=SECRET).issue_pair("ayse", session_id="s").access_token
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "authorization"}  # fmt: skip
    async with module.app.router.lifespan_context(module.app):
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answered = await http.options("/me", headers=preflight)
            assert answered.status_code == 200
            assert answered.headers["access-control-allow-origin"] == ORIGIN
            assert "authorization" in answered.headers["access-control-allow-headers"].lower()
            assert "ratelimit" not in answered.headers
            assert [key async for key in redis.scan_iter("rate_limit:*")] == []  # no budget spent
            read = await http.get("/me", headers={"Origin": ORIGIN, "Authorization": f"Bearer {token}"})
            assert read.json() == {"user": "ayse"} and read.headers["access-control-allow-origin"] == ORIGIN
            assert "ratelimit" in read.headers["access-control-expose-headers"].lower()
            assert read.headers["ratelimit"].startswith('"default";r=99;')
            other = await http.options("/me", headers={**preflight, "Origin": "https://evil.example"})
            assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    await redis.aclose()
    sys.modules.pop("app", None)

"""The home page's example (docs/examples/home/app.py) does what the page says: /health is public,
/me needs a valid token and answers with its user, the RateLimit headers are there, and a revoked
token is refused."""

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
SECRET = "home-page-secret-home-page-secret"


async def test_the_home_page_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES / "home"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    blacklist = TokenBlacklist(redis)
    await blacklist.ensure_epoch()
    pair = TokenIssuer(key=SECRET).issue_pair("ayse", session_id="laptop")
    bearer = {"Authorization": f"Bearer {pair.access_token}"}
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.get("/health")).json() == {"ok": True}
        assert (await http.get("/me")).status_code == 401
        me = await http.get("/me", headers=bearer)
        assert me.json() == {"user": "ayse"}
        assert me.headers["ratelimit-policy"] == '"default";q=100;w=3600'
        await blacklist.revoke(pair.access)
        assert (await http.get("/me", headers=bearer)).status_code == 401
    await module.redis.aclose()
    await redis.aclose()
    sys.modules.pop("app", None)

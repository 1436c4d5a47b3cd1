"""The caching how-to (docs/examples/caching/app.py): a read is loaded, then served from Redis, then
from the near cache; a write's invalidation reaches both; a missing row is a 404 served from the
cache too."""

from __future__ import annotations

import importlib
import sys

import httpx
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from tests.docs.walkthrough import EXAMPLES

pytestmark = pytest.mark.anyio


async def test_reads_writes_and_the_near_cache(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(EXAMPLES / "caching"))
    sys.modules.pop("app", None)
    module = importlib.import_module("app")
    redis = Redis.from_url(redis_server.url)
    await redis.flushdb()
    async with module.app.router.lifespan_context(module.app):
        assert module.near.active
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            reads = [await http.get("/products/1") for _ in range(3)]
            assert [read.headers["x-cache"] for read in reads] == ["loader", "redis", "local"]
            assert reads[2].json() == {"id": 1, "name": "Çay bardağı", "price": "45.00"}
            assert await redis.ttl("product:1") > 3500
            changed = await http.patch("/products/1", json={"price": "50.00"})
            assert changed.json()["price"] == "50.00"
            after = await http.get("/products/1")
            assert after.headers["x-cache"] == "loader" and after.json()["price"] == "50.00"
            assert (await http.get("/products/9")).status_code == 404
            assert await redis.get("product:9") is not None  # the miss is cached (60 s)
            assert 0 < await redis.ttl("product:9") <= 60
    await redis.aclose()
    sys.modules.pop("app", None)

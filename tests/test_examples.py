"""The README's examples (in examples/) run: a bare ASGI app and a FastAPI app behind the middleware."""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from jose import jwt

from gateway.testing import RedisServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
SECRET = "example-secret-example-secret-example-secret"


def load(name: str, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> ModuleType:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def token(sub: str = "ayse") -> str:
    now = int(time.time())
    claims = {"sub": sub, "jti": f"j{time.monotonic_ns()}", "iat": now, "exp": now + 60, "type": "access"}
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("name", ["plain_asgi", "fastapi_app"])
def test_readme_shows_the_example_verbatim(name: str) -> None:
    assert (ROOT / "examples" / f"{name}.py").read_text() in (ROOT / "README.md").read_text()


async def test_plain_asgi_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("plain_asgi", monkeypatch, redis_server)
    await module.redis.set("epoch", 0)  # this Redis has "always" been there, so older tokens pass
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=module.app), base_url="http://t") as client:
        assert (await client.get("/public")).text == "hello stranger"
        assert (await client.get("/private")).status_code == 401
        private = await client.get("/private", headers={"Authorization": f"Bearer {token()}"})
        assert private.text == "hello ayse"
    await module.redis.aclose()


async def test_fastapi_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("fastapi_app", monkeypatch, redis_server)
    async with module.app.router.lifespan_context(module.app):
        await module.state["redis"].set("epoch", 0)
        transport = httpx.ASGITransport(app=module.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/public")).json() == {"public": True}
            assert (await client.get("/me")).status_code == 401
            me = await client.get("/me", headers={"Authorization": f"Bearer {token()}"})
            assert me.json() == {"greeting": "merhaba ayse"}
            assert await module.state["redis"].get("greeting:ayse") is not None
            assert (await client.get("/openapi.json")).status_code == 200

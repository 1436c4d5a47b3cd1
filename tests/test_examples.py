"""The README's examples (in examples/) run: a bare ASGI app, FastAPI, Starlette and Django behind the
gateway, against a real Redis."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from jose import jwt
from redis import Redis as SyncRedis
from starlette.testclient import TestClient, WebSocketDenialResponse

from gateway.testing import RedisServer

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[1]
SECRET = "example-secret-example-secret-example-secret"
EXAMPLES = ["plain_asgi", "fastapi_app", "starlette_app", "django_app"]


def load(name: str, monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> ModuleType:
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    if name == "django_app" and name in sys.modules:
        return sys.modules[name]  # Django's settings are configured once per process
    sys.modules.pop(name, None)
    return importlib.import_module(name)


def token(sub: str = "ayse") -> str:
    now = int(time.time())
    claims = {"sub": sub, "jti": f"j{time.monotonic_ns()}", "iat": now, "exp": now + 60, "type": "access"}
    return str(jwt.encode(claims, SECRET, algorithm="HS256"))


def bearer(sub: str = "ayse") -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub)}"}


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


@pytest.mark.parametrize("name", EXAMPLES)
def test_readme_shows_the_example_verbatim(name: str) -> None:
    assert (ROOT / "examples" / f"{name}.py").read_text() in (ROOT / "README.md").read_text()


async def test_plain_asgi_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("plain_asgi", monkeypatch, redis_server)
    await module.redis.set("epoch", 0)  # this Redis has "always" been there, so older tokens pass
    async with client(module.app) as http:
        assert (await http.get("/public")).text == "hello stranger"
        assert (await http.get("/private")).status_code == 401
        private = await http.get("/private", headers=bearer())
        assert private.text == "hello ayse" and private.headers["ratelimit-limit"] == "100"
    await module.redis.aclose()


async def test_fastapi_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("fastapi_app", monkeypatch, redis_server)
    async with module.app.router.lifespan_context(module.app):
        await module.state["redis"].set("epoch", 0)
        async with client(module.app) as http:
            assert (await http.get("/public")).json() == {"public": True}
            assert (await http.get("/me")).status_code == 401
            assert (await http.get("/me", headers=bearer())).json() == {"greeting": "merhaba ayse"}
            assert await module.state["redis"].get("greeting:ayse") is not None
            headers = bearer("emre")
            sent = [await http.post("/messages", headers=headers) for _ in range(3)]
            assert [r.status_code for r in sent] == [200, 200, 429]  # the route's own 2/minute
            assert sent[0].headers["ratelimit-policy"] == '"POST /messages";q=2;w=60'
            schema = (await http.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schema["paths"]["/me"]["get"]["security"] == [{"bearerAuth": []}]  # the lock in /docs
    assert "security" not in schema["paths"]["/public"]["get"]


async def test_starlette_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("starlette_app", monkeypatch, redis_server)
    async with module.app.router.lifespan_context(module.app):
        await module.state["redis"].set("epoch", 0)
        async with client(module.app) as http:
            assert (await http.get("/public")).json() == {"signed_in": False}
            me = await http.get("/me", headers=bearer())
            assert me.json() == {"id": "ayse", "scopes": ["authenticated"]}  # @requires and request.auth
            headers = bearer("can")
            uploads = [(await http.post("/upload", headers=headers)).status_code for _ in range(3)]
            assert uploads == [200, 200, 429]


async def test_django_example(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer) -> None:
    module = load("django_app", monkeypatch, redis_server)
    from gateway.integrations.django import patterns_from_urlconf

    assert patterns_from_urlconf() == ["/items/{item_id:int}/", "/orders/"]
    await module.redis.set("epoch", 0)
    async with client(module.app) as http:
        assert (await http.get("/items/7/")).json() == {"item": 7, "viewer": None}
        assert (await http.get("/items/7/", headers=bearer())).json() == {"item": 7, "viewer": "ayse"}
        assert (await http.get("/orders/")).status_code == 401
        headers = bearer("deniz")
        orders = [(await http.get("/orders/", headers=headers)).status_code for _ in range(4)]
        assert orders == [200, 200, 200, 429]  # the override, by template, any method
        for i in range(5):  # unknown paths: one "unmatched" budget, Django answers its 404
            assert (await http.get(f"/nope/{i}/")).status_code == 404
    keys = sorted([k.decode() async for k in module.redis.scan_iter("rate_limit:*")])
    assert "rate_limit:ip:127.0.0.1:unmatched" in keys and "rate_limit:deniz:GET /orders/" in keys
    await module.redis.aclose()


@pytest.mark.parametrize(("name", "path"), [("fastapi_app", "/ws"), ("starlette_app", "/feed"), ("django_app", "/ws/")])
def test_a_websocket_route_is_behind_the_same_gate(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, name: str, path: str
) -> None:
    """An anonymous handshake is refused before accept with the 401 an HTTP request gets; one with a
    token is served, and the app sees the caller."""
    module = load(name, monkeypatch, redis_server)
    sync = SyncRedis.from_url(redis_server.url)
    sync.set("epoch", 0)
    sync.close()
    http = TestClient(module.app)
    with http if name != "django_app" else contextlib.nullcontext(http):  # Django's handler refuses lifespan
        with pytest.raises(WebSocketDenialResponse) as refused, http.websocket_connect(path):
            pass
        assert refused.value.status_code == 401
        assert refused.value.headers["www-authenticate"] == 'Bearer realm="kapi"'
        with http.websocket_connect(path, headers=bearer("selin")) as ws:
            greeting = ws.receive_text()
    assert "selin" in greeting

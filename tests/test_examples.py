"""The examples the docs show (in examples/) run: a bare ASGI app, FastAPI, Starlette and Django behind
the gateway, against a real Redis. Each is shown by its getting-started page (a snippet include of the
file itself), and the FastAPI one by the README too, verbatim."""

from __future__ import annotations

import contextlib
import importlib
import os
import subprocess
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
#: Each example's protected route and its log-out routes.
PROTECTED = {
    "plain_asgi": ("/private", "/logout", "/logout/all"),
    "fastapi_app": ("/me", "/logout", "/logout/all"),
    "starlette_app": ("/me", "/logout", "/logout/all"),
    "django_app": ("/orders/", "/logout/", "/logout/all/"),
}


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


#: The getting-started page that shows each example.
PAGES = {
    "plain_asgi": "asgi.md",
    "fastapi_app": "fastapi.md",
    "starlette_app": "starlette.md",
    "django_app": "django.md",
}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_docs_show_the_example(name: str) -> None:
    page = (ROOT / "docs" / "getting-started" / PAGES[name]).read_text()
    assert f'--8<-- "examples/{name}.py"' in page


def test_readme_shows_the_fastapi_example_verbatim() -> None:
    assert (ROOT / "examples" / "fastapi_app.py").read_text() in (ROOT / "README.md").read_text()


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

    assert patterns_from_urlconf() == ["/items/{item_id:int}/", "/orders/", "/logout/", "/logout/all/"]
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


@pytest.mark.parametrize("name", EXAMPLES)
async def test_logging_out_one_token_and_everywhere(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer, name: str
) -> None:
    """A token minted by examples/mint_token.py (with the example's secret and Redis) passes the
    example's protected route; its log-out route revokes that token only, and log-out-everywhere every
    token of the user."""
    module = load(name, monkeypatch, redis_server)
    monkeypatch.syspath_prepend(str(ROOT))
    from examples.mint_token import mint

    sync = SyncRedis.from_url(redis_server.url)
    sync.flushdb()  # ours: a log-out-everywhere of another example's run would refuse these tokens
    sync.close()
    if name == "django_app":  # imported once per process: drop connections an earlier test's loop made
        module.redis.connection_pool.reset()

    protected, logout, logout_all = PROTECTED[name]
    lifespan = module.app.router.lifespan_context(module.app) if hasattr(module.app, "router") else None
    async with lifespan or contextlib.nullcontext(), client(module.app) as http:
        laptop, phone, other = [{"Authorization": f"Bearer {await mint(user)}"} for user in ("ayse", "ayse", "can")]
        first = await http.get(protected, headers=laptop)
        assert first.status_code == 200, first.text
        assert (await http.post(logout, headers=laptop)).status_code == 204
        refused = await http.get(protected, headers=laptop)
        assert refused.status_code == 401
        assert 'error_description="The token has been revoked."' in refused.headers["www-authenticate"]
        assert (await http.get(protected, headers=phone)).status_code == 200  # her other login goes on
        assert (await http.post(logout_all, headers=phone)).status_code == 204
        refused = await http.get(protected, headers=phone)
        assert refused.status_code == 401
        assert "log-out on all devices" in refused.headers["www-authenticate"]
        assert (await http.get(protected, headers=other)).status_code == 200  # another user is untouched
        assert (await http.get(logout)).status_code != 204  # a GET never logs out


@pytest.mark.parametrize("name", [*EXAMPLES, "mint_token"])
def test_without_jwt_secret_the_example_says_so(name: str) -> None:
    """A newcomer who forgot JWT_SECRET gets one line saying what to set, not a KeyError."""
    env = {key: value for key, value in os.environ.items() if key != "JWT_SECRET"}
    command = (
        [sys.executable, "-c", f"import examples.{name}"]
        if name != "mint_token"
        else [sys.executable, "-m", "examples.mint_token", "ayse"]
    )
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("Set JWT_SECRET first") and "Traceback" not in done.stderr

"""The WebSockets-and-SSE how-to (docs/examples/streams/app.py) under a real uvicorn: an anonymous
handshake is refused before accept with the HTTP answer; a token in the header or offered as a
bearer.<token> subprotocol (as a browser does) opens one; a logout closes an open WebSocket (1008)
and an SSE stream (a last close event) within a second."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from redis import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import TokenBlacklist, TokenIssuer
from gateway.testing import RedisServer
from tests.docs.walkthrough import TUTORIAL_SECRET, Uvicorn

pytestmark = pytest.mark.anyio


@pytest.fixture
def server(redis_server: RedisServer, tmp_path: Path) -> Iterator[Uvicorn]:
    client = Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    env = {"JWT_SECRET": TUTORIAL_SECRET, "REDIS_URL": redis_server.url}
    with Uvicorn("app:app", env, log=tmp_path / "uvicorn.log", command=["--app-dir", "docs/examples/streams"]) as up:
        yield up


async def mint(redis_url: str, user: str) -> str:
    from redis.asyncio import Redis as AsyncRedis

    redis = AsyncRedis.from_url(redis_url)
    await TokenBlacklist(redis).ensure_epoch()
    await redis.aclose()
    return TokenIssuer(key=TUTORIAL_SECRET).issue_pair(user, session_id="s").access_token


async def test_a_handshake_is_checked_like_a_request(server: Uvicorn, redis_server: RedisServer) -> None:
    ws_url = server.url.replace("http://", "ws://") + "/chat"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="kapi"'
    token = await mint(redis_server.url, "ayse")
    async with connect(ws_url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        assert await ws.recv() == "hello ayse"
        await ws.send("merhaba")
        assert await ws.recv() == "you said: merhaba"
    async with connect(ws_url, subprotocols=["chat", f"bearer.{token}"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "chat"  # the app's protocol is chosen; the token is never echoed
        assert await ws.recv() == "hello ayse"


async def test_a_logout_closes_the_open_websocket_and_sse_stream(server: Uvicorn, redis_server: RedisServer) -> None:
    token = await mint(redis_server.url, "emre")
    bearer = {"Authorization": f"Bearer {token}"}
    ws_url = server.url.replace("http://", "ws://") + "/chat"
    async with connect(ws_url, additional_headers=bearer) as ws, httpx.AsyncClient(base_url=server.url) as http:
        assert await ws.recv() == "hello emre"
        async with http.stream("GET", "/ticks", headers=bearer) as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "data: tick 0"
            started = time.monotonic()
            assert (await http.post("/logout", headers=bearer)).status_code == 204
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(1.0):
                    while True:
                        await ws.recv()
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "The token has been revoked.")
            rest = []
            async with asyncio.timeout(1.0):
                rest = [line async for line in lines]
            assert time.monotonic() - started < 1.0
    assert "event: close" in rest
    data = next(line for line in reversed(rest) if line.startswith("data: {"))
    assert '"reason":"The token has been revoked."' in data and '"retry":false' in data

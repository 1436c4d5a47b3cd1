"""BodyLimitMiddleware on a bare ASGI app and on Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.bodylimit import BodyLimitMiddleware
from gateway.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


async def echo_length(scope: Scope, receive: Receive, send: Send) -> None:
    size, more = 0, True
    while more:
        message = await receive()
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": str(size).encode()})


async def chunks(total: int, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


@pytest.mark.parametrize("streamed", [False, True])
async def test_bare_asgi_app(streamed: bool) -> None:
    app = BodyLimitMiddleware(echo_length, max_body_size=2048)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        small = await client.post("/", content=chunks(2048) if streamed else b"x" * 2048)
        assert (small.status_code, small.text) == (200, "2048")
        large = await client.post("/", content=chunks(2049) if streamed else b"x" * 2049)
        assert large.status_code == 413
        assert large.headers["content-type"] == "application/problem+json"
        assert large.json()["status"] == 413


async def test_starlette_handler_reading_a_streamed_body_gets_413() -> None:
    async def handler(request: Request) -> JSONResponse:
        return JSONResponse({"size": len(await request.body())})

    app = BodyLimitMiddleware(Starlette(routes=[Route("/", handler, methods=["POST"])]), max_body_size=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.post("/", content=chunks(100, 30))).json() == {"size": 100}
        assert (await client.post("/", content=chunks(101, 30))).status_code == 413


async def test_non_numeric_content_length_is_400() -> None:
    app = BodyLimitMiddleware(echo_length, max_body_size=100)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post("/", content=b"abc", headers={"content-length": "ab"})
        assert response.status_code == 400

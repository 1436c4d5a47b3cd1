"""RequestIdMiddleware on a bare ASGI app: the id is taken when sane, made otherwise, echoed, and
visible to code (and logs) while the request runs."""

from __future__ import annotations

import httpx
import pytest

from gateway.requestid import RequestIdMiddleware, request_id
from gateway.types import Receive, Scope, Send

pytestmark = pytest.mark.anyio


async def echo_id(scope: Scope, receive: Receive, send: Send) -> None:
    body = f"{request_id.get()}|{scope['state']['request_id']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_taken_made_echoed_and_in_context() -> None:
    app = RequestIdMiddleware(echo_id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        given = await client.get("/", headers={"X-Request-ID": "trace-7"})
        assert given.headers["x-request-id"] == "trace-7" and given.text == "trace-7|trace-7"
        made = await client.get("/", headers={"X-Request-ID": "bad id with spaces"})
        rid = made.headers["x-request-id"]
        assert rid != "bad id with spaces" and made.text == f"{rid}|{rid}"
    assert request_id.get() == ""  # reset after the request

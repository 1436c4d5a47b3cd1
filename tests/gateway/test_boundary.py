"""ErrorBoundaryMiddleware: a bug becomes a problem+json 500 without a traceback."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.requests import Request

from gateway.boundary import ErrorBoundaryMiddleware
from gateway.types import Message, Receive, Scope, Send

pytestmark = pytest.mark.anyio


async def broken(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("secret internals /etc/passwd")


async def test_an_exception_becomes_a_problem_500(caplog: pytest.LogCaptureFixture) -> None:
    app = ErrorBoundaryMiddleware(broken)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert "unhandled error on GET /boom" in caplog.text


async def test_a_client_that_hangs_up_mid_body_is_not_an_error(caplog: pytest.LogCaptureFixture) -> None:
    """Starlette's ``Request`` raises ``ClientDisconnect`` when the server says the client went away:
    nothing is answered (nobody is there), nothing is logged as an error."""
    sent: list[Message] = []

    async def reads_json(scope: Scope, receive: Receive, send: Send) -> None:
        await Request(scope, receive).json()
        raise AssertionError("the body never completes")

    messages = iter([{"type": "http.request", "body": b'{"phone":', "more_body": True}, {"type": "http.disconnect"}])

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/auth/otp", "headers": [], "query_string": b""}
    with caplog.at_level(logging.DEBUG, logger="gateway.errors"):
        await ErrorBoundaryMiddleware(reads_json)(scope, receive, send)
    assert sent == []
    assert [record.levelno for record in caplog.records] == [logging.DEBUG]
    assert "499" in caplog.text and "Traceback" not in caplog.text

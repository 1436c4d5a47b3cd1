"""ErrorBoundaryMiddleware: a bug becomes a problem+json 500 without a traceback."""

from __future__ import annotations

import httpx
import pytest

from gateway.boundary import ErrorBoundaryMiddleware
from gateway.types import Receive, Scope, Send

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

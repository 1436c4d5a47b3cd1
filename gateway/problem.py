"""RFC 9457 ``application/problem+json`` responses: the one error format every layer answers with."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from starlette.responses import Response

from gateway.types import Receive, Scope, Send

#: The media type of every error response (RFC 9457).
PROBLEM_JSON = "application/problem+json"


class ProblemResponse(Response):
    """An error as ``application/problem+json``; never carries a traceback.

    The body has ``type`` (default ``about:blank``), ``title`` (default: the status phrase),
    ``status`` and ``detail``, then ``errors`` (field-level problems) when given, then any ``extra``
    members (``tries_left=2``). ``headers`` are added to the response."""

    media_type = PROBLEM_JSON

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        body: dict[str, Any] = {
            "type": type,
            "title": title or HTTPStatus(status).phrase,
            "status": status,
            "detail": detail,
        }
        if errors is not None:
            body["errors"] = list(errors)
        body.update(extra)
        super().__init__(orjson.dumps(body), status_code=status, headers=headers, media_type=PROBLEM_JSON)


#: WebSocket close code for a refused handshake or a token that stopped being valid (RFC 6455
#: §7.4.1: policy violation).
CLOSE_POLICY = 1008
#: ... and for a handshake the server cannot serve right now (a 5xx answer; RFC 6455 §7.4.1).
CLOSE_SERVER_ERROR = 1011


async def answer(response: ProblemResponse, scope: Scope, receive: Receive, send: Send) -> None:
    """Send an early answer of the gateway. On a WebSocket handshake: the same response as HTTP's
    (status, headers, problem body) through the ASGI denial-response extension where the server has
    it (uvicorn does), else a close before accept with the problem's detail: code 1008 for a refusal,
    1011 for a 5xx (the server cannot serve it right now)."""
    if scope["type"] != "websocket" or "websocket.http.response" in scope.get("extensions", {}):
        await response(scope, receive, send)
        return
    reason = orjson.loads(response.body).get("detail", "").encode()[:123].decode(errors="ignore")  # 125-byte frame
    code = CLOSE_SERVER_ERROR if response.status_code >= 500 else CLOSE_POLICY
    await send({"type": "websocket.close", "code": code, "reason": reason})

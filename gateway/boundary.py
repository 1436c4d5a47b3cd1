"""``ErrorBoundaryMiddleware``: the outermost layer; an unexpected exception becomes a problem+json 500
without a traceback in the response, and is logged once. A client that went away before its request
was complete is not an error: it is logged quietly as 499 and nothing is answered."""

from __future__ import annotations

import logging

from starlette.requests import ClientDisconnect

from gateway.problem import ProblemResponse
from gateway.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CLIENT_CLOSED_REQUEST", "ClientDisconnect", "ErrorBoundaryMiddleware"]

logger = logging.getLogger("gateway.errors")

#: The status recorded for a request whose client hung up before it was complete: nginx's
#: "client closed request", the de-facto convention in access logs and metrics. Never sent.
CLIENT_CLOSED_REQUEST = 499


class ErrorBoundaryMiddleware:
    """Answers an unexpected exception with a problem+json 500 (logged once, with its traceback) when
    no response has started; lets a client disconnect (``ClientDisconnect``, raised by Starlette's
    ``Request`` when ``receive`` says ``http.disconnect``) end the request quietly."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            logger.debug("client closed request (%d) on %s %s", CLIENT_CLOSED_REQUEST, scope["method"], scope["path"])
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = ProblemResponse(500, "The server could not complete this request; it has been logged.")
                await response(scope, receive, send)

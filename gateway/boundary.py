"""``ErrorBoundaryMiddleware``: the outermost layer; an unexpected exception becomes a problem+json 500
without a traceback in the response, and is logged once."""

from __future__ import annotations

import logging

from gateway.problem import ProblemResponse
from gateway.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("gateway.errors")


class ErrorBoundaryMiddleware:
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
        except Exception:
            logger.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if not started:
                response = ProblemResponse(500, "The server could not complete this request; it has been logged.")
                await response(scope, receive, send)

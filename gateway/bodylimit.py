"""``BodyLimitMiddleware``: refuse request bodies over a size limit with 413, declared or streamed."""

from __future__ import annotations

from starlette.exceptions import HTTPException

from gateway.problem import ProblemResponse
from gateway.types import ASGIApp, Message, Receive, Scope, Send


class RequestTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit. It is an ``HTTPException``
    so a Starlette app's exception handlers answer it; for other apps the middleware does."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodyLimitMiddleware:
    """Refuse a request body over ``max_body_size`` bytes with a 413 problem: at once when the
    declared ``Content-Length`` says so, else as soon as a streamed (chunked) body passes it."""

    def __init__(self, app: ASGIApp, *, max_body_size: int = 65536) -> None:
        if max_body_size < 0:
            raise ValueError("max_body_size must not be negative")
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        limit = self.max_body_size
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit():
                    await ProblemResponse(400, "Content-Length is not a number.")(scope, receive, send)
                    return
                if int(value) > limit:
                    await self._refuse(scope, receive, send)
                    return
                # The server frames the body by its declared length, so it cannot grow past it.
                await self.app(scope, receive, send)
                return
            if name == b"transfer-encoding":
                chunked = True
        if not chunked and scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)  # no body to count
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise RequestTooLarge(limit)
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, send_wrapper)
        except RequestTooLarge:
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = ProblemResponse(
            413, f"The request body is larger than {self.max_body_size} bytes.", headers={"Connection": "close"}
        )
        await response(scope, receive, send)

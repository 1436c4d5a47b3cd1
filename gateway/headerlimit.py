"""``HeaderLimitMiddleware``: refuse requests whose headers are too large with 431, before any work.

Some servers (uvicorn with httptools) accept very large header blocks; a gateway should not pass
them on to authentication, logging and the app.
"""

from __future__ import annotations

from gateway.problem import ProblemResponse
from gateway.types import ASGIApp, Receive, Scope, Send


class HeaderLimitMiddleware:
    """Refuse a request with more than ``max_headers`` headers or more than ``max_header_size`` bytes
    of them with a 431 problem, before any other layer reads them."""

    def __init__(self, app: ASGIApp, *, max_header_size: int = 16384, max_headers: int = 100) -> None:
        if max_header_size < 1 or max_headers < 1:
            raise ValueError("max_header_size and max_headers must be positive")
        self.app = app
        self.max_header_size = max_header_size
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        size = sum(len(name) + len(value) + 4 for name, value in headers)
        if size > self.max_header_size or len(headers) > self.max_headers:
            response = ProblemResponse(
                431,
                f"The request headers are too large: at most {self.max_headers} headers, {self.max_header_size} bytes.",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

"""``RequestIdMiddleware``: every request gets an id, taken from ``X-Request-ID`` when the caller sent
a sane one, else made here; it is echoed in the response and available to logs while it runs."""

from __future__ import annotations

import itertools
import re
import secrets
from contextvars import ContextVar, Token
from typing import NamedTuple

from gateway.types import ASGIApp, Message, Receive, Scope, Send

#: The current request's id (empty outside a request), for log records.
request_id: ContextVar[str] = ContextVar("request_id", default="")

_SANE = re.compile(rb"^[A-Za-z0-9._:/+=-]{1,128}$")
_PREFIX = secrets.token_hex(4)
_counter = itertools.count()


def new_request_id() -> str:
    """Unique across processes (random prefix) and within one (a counter); no system call."""
    return f"{_PREFIX}-{next(_counter):x}"


def assign_request_id(scope: Scope, header: bytes = b"x-request-id") -> str:
    """The request's id (the caller's, if sane; else a new one), stored in ``scope["state"]``."""
    given = next((value for name, value in scope["headers"] if name == header), None)
    # Only ids that cannot smuggle anything into logs or headers are taken as they are.
    rid = given.decode() if given is not None and _SANE.match(given) else new_request_id()
    scope.setdefault("state", {})["request_id"] = rid
    return rid


class RequestId(NamedTuple):
    """One request's id while it runs (``begin_request``): its text, the response header that echoes
    it, and what ``end_request`` needs to restore the previous id."""

    text: str
    header: tuple[bytes, bytes]
    token: Token[str]


def begin_request(scope: Scope, header: bytes = b"x-request-id") -> RequestId:
    """Give the request its id (``assign_request_id``) and make it the current one for log records.
    For a layer that does this alongside other work (the service's metrics layer) instead of adding
    ``RequestIdMiddleware``: call ``end_request`` when the request is over."""
    text = assign_request_id(scope, header)
    return RequestId(text, (header, text.encode()), request_id.set(text))


def end_request(rid: RequestId) -> None:
    """The request is over: the id that was current before ``begin_request`` is current again."""
    request_id.reset(rid.token)


class RequestIdMiddleware:
    """Every HTTP request gets an id (the caller's ``X-Request-ID`` when sane), echoed in the response
    and current for log records (``request_id``) while it runs. ``header`` names the request and
    response header (``X-Request-ID``)."""

    def __init__(self, app: ASGIApp, *, header: str = "x-request-id") -> None:
        self.app = app
        self.header = header.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = begin_request(scope, self.header)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append(rid.header)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            end_request(rid)

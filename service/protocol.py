"""uvicorn's httptools protocol, writing each response to the socket in one piece.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send`` system calls, and on a small response two
trips through the kernel's TCP stack, which measured here as most of uvicorn's share of a request.
This protocol gives uvicorn a transport that gathers what is written during one turn of the event
loop and hands it to the socket as one write at the end of that turn (or before the connection is
closed). Nothing is reordered or held past the turn; flow control and everything else go to the real
transport. The Procfile selects it: ``uvicorn --http service.protocol:HttpProtocol`` (and the gunicorn
worker, ``service/worker.py``).

It also puts read deadlines on slow clients, which uvicorn has none of (a client sending one byte of
its head every few seconds holds its connection for ever): the whole request head must arrive within
``HTTP_HEADER_TIMEOUT`` and a body may pause at most ``HTTP_BODY_TIMEOUT`` between reads; then the
connection is closed, with a ``408`` problem where a response can still be written (not inside a
response already begun, nor to a connection that never sent a byte: it made no request). The head's
clock starts when the connection is made and, on a kept-alive connection, with the first byte of the
next request (stray CRLFs included): the idle wait before that byte is uvicorn's keep-alive timeout's,
and a byte cancels that timeout, so the head deadline takes over from it. Time the server is not
reading (flow control, a pipelined request waiting its turn) or has not yet asked for the body
(``Expect: 100-continue``) is not counted against the client. When the body deadline passes, the app's
``receive()`` answers ``http.disconnect`` and its sends are dropped, as if the client had gone. A
pipelined head that is late behind a response still being made lets that response (and the requests
already received) finish, then the connection is closed.

This leans on uvicorn's ``HttpToolsProtocol`` and ``RequestResponseCycle`` internals (its parser
callbacks, ``cycle``, ``pipeline``, ``flow``), all of it in ``HttpProtocol``, whose docstring lists
them and the uvicorn range they were checked against (the one ``pyproject.toml`` pins);
``tests/test_upstream_contracts.py`` is their contract test, ``tests/service/test_protocol.py`` tests
the behaviour.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.problem import ProblemResponse
from service.settings import http_timeouts


class _GatheringTransport:
    """Writes made in one loop turn go out as one ``write``; every other call goes to ``transport``."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        pending = self._pending
        if pending:
            self._pending = []
            if not self._transport.is_closing():  # the peer went away meanwhile: nobody to write to
                self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()  # what was written goes out before the FIN
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(data) for data in self._pending)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _timeout_response(detail: str) -> bytes:
    """A ``408`` problem's headers after the status line and uvicorn's default headers, and its body."""
    response = ProblemResponse(408, detail, headers={"Connection": "close"})
    return b"".join(name + b": " + value + b"\r\n" for name, value in response.raw_headers) + b"\r\n" + response.body


_HEAD_TIMEOUT = _timeout_response("The request head did not arrive in time (HTTP_HEADER_TIMEOUT).")
_BODY_TIMEOUT = _timeout_response("The request body paused for too long (HTTP_BODY_TIMEOUT).")

# What the connection is waiting for from the client.
_IDLE = 0  # nothing: before a kept-alive connection's next request, or a complete request being answered
_OPENED = 1  # the first request's head, on a connection that has sent nothing yet
_HEAD = 2  # the rest of a request head
_BODY = 3  # more of a request body


# The base class's callbacks, called directly (cheaper than super() on a path taken for every request).
_data_received = HttpToolsProtocol.data_received
_on_message_begin = HttpToolsProtocol.on_message_begin
_on_message_complete = HttpToolsProtocol.on_message_complete


class HttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a response's header and body writes gathered into one, and read
    deadlines for the request head and body (see the module's docstring).

    This class is the one place that relies on uvicorn's internals, checked against uvicorn
    >=0.30,<0.56 (the range ``pyproject.toml`` pins; ``tests/test_upstream_contracts.py`` fails, naming
    it, when a release changes them): the constructor ``(config, server_state, app_state, _loop)``;
    ``connection_made`` setting ``self.transport`` and building ``self.flow`` (flow control) on the
    transport it is given, and each request's cycle writing to whatever ``self.transport`` is when its
    head completes (so replacing it after ``connection_made`` carries every response, while pausing
    reads still reaches the socket); the callbacks ``data_received``, ``on_message_begin``,
    ``on_message_complete`` (called for a WebSocket handshake too, before it is handed over) and
    ``connection_lost``; ``self.cycle`` (``None`` before the first request, then the newest request's:
    ``on_headers_complete`` makes a new one for every request but a WebSocket upgrade) with ``response_started``,
    ``response_complete``, ``waiting_for_100_continue``, ``keep_alive`` (``False``: closed after the
    response) and ``disconnected`` with ``message_event`` (both set: ``receive()`` answers
    ``http.disconnect`` and sends are dropped); ``self.pipeline`` (requests queued behind the one being
    answered), ``self.flow.read_paused``, ``self.loop``, ``self.server_state.default_headers`` and ``STATUS_LINE``."""

    #: ``(HTTP_HEADER_TIMEOUT, HTTP_BODY_TIMEOUT)``, read once per process when the first connection comes
    #: (by then uvicorn has loaded the app, and the service's start-up has stopped on a bad value).
    timeouts: ClassVar[tuple[float, float] | None] = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        timeouts = HttpProtocol.timeouts
        if timeouts is None:
            timeouts = HttpProtocol.timeouts = http_timeouts()
        self._header_timeout, self._body_timeout = timeouts
        self._waiting_for = _IDLE
        self._since = 0.0  # when the head began, or the body was last read from
        # One timer per connection, not one per request: a wait that begins re-arms it only if it would
        # fire too late for that wait; when it fires it checks the clock and re-arms for the time left.
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_at = 0.0
        self._head_after: object = None  # the request cycle there was when the last request ended

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _GatheringTransport(transport, self.loop)  # type: ignore[assignment]
        self._wait_for_head(_OPENED)  # a connection that never sends a byte is a slow head too

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting_for = _IDLE
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiting_for = self._waiting_for
        if waiting_for == _IDLE:  # the next request begins (stray CRLFs before it count as its head)
            # _wait_for_head(_HEAD), inlined: this runs once per request.
            self._waiting_for = _HEAD
            self._since = when = self.loop.time()
            when += self._header_timeout
            if self._deadline is None or when < self._deadline_at:
                self._arm(when)
        elif waiting_for == _OPENED:  # the first request begins; its clock started with the connection
            self._waiting_for = _HEAD
        _data_received(self, data)
        waiting_for = self._waiting_for
        if waiting_for == _HEAD:
            # uvicorn makes a new request cycle when a head completes, so the newest head is still coming
            # while the cycle is the one there was when the last request ended. (A WebSocket handshake makes
            # no cycle, but its on_message_complete has come before the hand-over: we are _IDLE then.)
            # Checked here, once per read, rather than in on_headers_complete for every request: each
            # override is one more Python call on the hot path.
            if self.cycle is self._head_after:
                return
            waiting_for = self._waiting_for = _BODY
        if waiting_for == _BODY:  # still inside a body: its pause starts now
            self._since = now = self.loop.time()
            self._arm(now + self._body_timeout)

    def on_message_begin(self) -> None:
        if self._waiting_for == _IDLE:  # a request pipelined behind one that ended in the same read
            self._wait_for_head(_HEAD)
        _on_message_begin(self)

    def on_message_complete(self) -> None:
        self._waiting_for = _IDLE
        self._head_after = self.cycle  # the next head is complete once uvicorn has made a newer cycle
        _on_message_complete(self)

    def _wait_for_head(self, waiting_for: int) -> None:
        self._waiting_for = waiting_for
        self._since = now = self.loop.time()
        self._arm(now + self._header_timeout)

    def _arm(self, when: float) -> None:
        deadline = self._deadline
        if deadline is None or when < self._deadline_at:
            if deadline is not None:
                deadline.cancel()
            self._deadline = self.loop.call_at(when, self._check_deadline)
            self._deadline_at = when

    def _check_deadline(self) -> None:
        self._deadline = None
        waiting_for = self._waiting_for
        if waiting_for == _IDLE or self.transport.is_closing():
            return
        now = self.loop.time()
        if self.flow.read_paused or (waiting_for == _BODY and self.cycle.waiting_for_100_continue):
            self._since = now  # the server is not reading, or has not asked for the body yet: no fault of the client's
        left = self._since + (self._body_timeout if waiting_for == _BODY else self._header_timeout) - now
        if left > 0:
            self._arm(now + left)
        elif waiting_for == _BODY:
            self._body_too_slow()
        else:
            self._head_too_slow(answer=waiting_for == _HEAD)

    def _head_too_slow(self, *, answer: bool) -> None:
        self._waiting_for = _IDLE
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            if answer:
                self._write_timeout(_HEAD_TIMEOUT)
            self.transport.close()
        else:
            # A pipelined head, behind a response still being made: a 408 now would land inside that
            # response. The requests already received are answered, then the connection is closed.
            cycle.keep_alive = False

    def _body_too_slow(self) -> None:
        self._waiting_for = _IDLE
        cycle = self.cycle
        if not cycle.response_started and not self.pipeline:  # nothing written for it, nothing queued ahead of it
            self._write_timeout(_BODY_TIMEOUT)
        if not cycle.response_complete:  # to the app the client is gone: receive() says so, sends are dropped
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.close()

    def _write_timeout(self, response: bytes) -> None:
        head = [STATUS_LINE[408]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        self.transport.write(b"".join(head) + response)

"""uvicorn's httptools protocol, writing each response to the socket in one piece.

uvicorn writes a response's status line and headers when the app sends ``http.response.start`` and
the body when it sends ``http.response.body``: two ``send`` system calls, and on a small response two
trips through the kernel's TCP stack, which measured here as most of uvicorn's share of a request.
This protocol gives uvicorn a transport that gathers what is written during one turn of the event
loop and hands it to the socket as one write at the end of that turn (or before the connection is
closed). Nothing is reordered or held past the turn; flow control and everything else go to the real
transport. The Procfile selects it: ``uvicorn --http service.protocol:HttpProtocol``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class HttpProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with a response's header and body writes gathered into one."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _GatheringTransport(transport, self.loop)  # type: ignore[assignment]

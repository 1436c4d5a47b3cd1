"""A TCP relay that holds every chunk for ``delay`` seconds in each direction, in order: a slow link
in front of a real redis-server, where the kernel has no ``netem`` to add one.

Each chunk is stamped when it is read and written once its time has come, without holding up the
reads that follow (a link with a propagation delay and no bandwidth limit). The wait is an asyncio
timer, so a chunk is held ``delay`` and up to about a millisecond more (epoll's resolution);
measure the link rather than trust the figure.

Run as a process (the cross-host test does), it prints the port it listens on and serves until it
is terminated::

    python -m tests.delay_relay LISTEN_HOST TARGET_HOST TARGET_PORT DELAY_MS
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys


class DelayingRelay:
    def __init__(self, target_host: str, target_port: int, *, delay: float, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self.host = host
        self.server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def start(self) -> DelayingRelay:
        self.server = await asyncio.start_server(self._handle, self.host, 0)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        for end in (writer, up_writer):  # Redis's own sockets have Nagle off; so does the link
            end.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_writer)),
            asyncio.ensure_future(self._pipe(up_reader, writer)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)  # both ends closed, or one broke
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            writer.transport.abort()
            up_writer.transport.abort()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        held: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await held.get()) is not None:
                due, data = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                sink.write(data)
                await sink.drain()
            with contextlib.suppress(OSError):
                sink.write_eof()

        delivery = asyncio.ensure_future(deliver())
        try:
            while data := await source.read(65536):
                held.put_nowait((loop.time() + self.delay, data))
            held.put_nowait(None)
            await delivery
        finally:
            delivery.cancel()


async def main(listen_host: str, target_host: str, target_port: int, delay_ms: float) -> None:
    relay = await DelayingRelay(target_host, target_port, delay=delay_ms / 1000, host=listen_host).start()
    print(relay.port, flush=True)
    assert relay.server is not None
    await relay.server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))

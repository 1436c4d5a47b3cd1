"""A TCP proxy in front of a real redis-server, for transport faults: a connection dropped after a
request reached Redis but before its reply came back (the reply is swallowed, then the link cut), and
replies that take ``delay`` seconds on the way back (a slow network)."""

from __future__ import annotations

import asyncio


class DroppingProxy:
    def __init__(self, target_port: int, *, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self.drop_next = False
        self.dropped = 0
        self.server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> DroppingProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await self._link(reader, writer)
        except (asyncio.CancelledError, OSError):
            pass
        finally:
            self._links.discard(task)
            writer.transport.abort()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        swallow = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if self.drop_next:
                    self.drop_next = False
                    swallow.set()  # Redis runs it; its reply never reaches the client
                    await asyncio.sleep(0.05)
                    self.dropped += 1
                    writer.transport.abort()
                    up_writer.close()
                    return

        async def to_client() -> None:
            loop = asyncio.get_running_loop()
            while data := await up_reader.read(65536):
                if swallow.is_set():
                    continue
                if self.delay:  # deliver later, without holding up what follows
                    loop.call_later(self.delay, writer.write, data)
                else:
                    writer.write(data)
                    await writer.drain()

        tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            up_writer.close()

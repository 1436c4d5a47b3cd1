"""The near cache's tracking channel as hiredis reads it, against a real redis-server: frames split
across reads, many frames in one read, and RESP3 that is not an invalidation (an attribute, a null,
another push, an error, bytes that are not RESP). A proxy between the channel and Redis holds back
what Redis sends and lets it through in pieces, or slips a command in on the channel."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway import NearCache
from gateway.testing import RedisServer
from tests.gateway.test_nearcache import until

pytestmark = pytest.mark.anyio


class ChannelProxy:
    """A TCP proxy for one tracking connection. While ``hold`` is set, what Redis sends is kept in
    ``held`` until :meth:`release`; :meth:`inject` sends a command to Redis as if the channel had;
    :meth:`to_client` sends raw bytes to the channel as if Redis had."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.hold = False
        self.held = bytearray()
        self.server: asyncio.Server | None = None
        self._client: asyncio.StreamWriter | None = None
        self._upstream: asyncio.StreamWriter | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def __aenter__(self) -> ChannelProxy:
        self.server = await asyncio.start_server(self._link, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def release(self, size: int | None = None) -> None:
        """Send ``size`` held bytes (all by default) to the channel, in one write."""
        assert self._client is not None
        size = len(self.held) if size is None else size
        self._client.write(bytes(self.held[:size]))
        del self.held[:size]
        await self._client.drain()

    async def inject(self, *command: str) -> None:
        assert self._upstream is not None
        parts = [part.encode() for part in command]
        self._upstream.write(b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts))
        await self._upstream.drain()

    async def to_client(self, data: bytes) -> None:
        assert self._client is not None
        self._client.write(data)
        await self._client.drain()

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._client, self._upstream = writer, up_writer

        async def to_server() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if self.hold:
                    self.held += data
                else:
                    writer.write(data)
                    await writer.drain()

        tasks = {asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())}
        self._tasks |= tasks
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            writer.transport.abort()
            up_writer.transport.abort()


def _debug_args(binary: str) -> list[str]:
    """DEBUG PROTOCOL needs ``enable-debug-command`` from Redis 7 on (an unknown option before)."""
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+)", version)
    return ["--enable-debug-command", "local"] if found and int(found.group(1)) >= 7 else []


@pytest.fixture(scope="module")
def debug_server() -> Iterator[RedisServer]:
    """A redis-server of this module's own that answers DEBUG PROTOCOL from 127.0.0.1."""
    server = RedisServer()
    server.extra_args = _debug_args(server.binary)
    with server:
        yield server


@pytest.fixture
async def writer(debug_server: RedisServer) -> AsyncIterator[Redis]:
    """Another process's connection, straight to Redis."""
    client = Redis.from_url(debug_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(debug_server: RedisServer) -> AsyncIterator[ChannelProxy]:
    async with ChannelProxy(debug_server.port) as proxy:
        yield proxy


@pytest.fixture
async def near(proxy: ChannelProxy) -> AsyncIterator[NearCache]:
    client = Redis.from_url(proxy.url)  # only where the channel connects: the proxy
    cache = NearCache(redis=client, prefixes=["item:"], ping_interval=0.1, connect_timeout=0.5)
    await cache.start()
    assert cache.active
    yield cache
    await cache.aclose()
    await client.aclose()


async def held_pushes(proxy: ChannelProxy, count: int) -> None:
    await until(lambda: proxy.held.count(b"invalidate") == count)


async def test_a_push_split_at_every_byte_is_applied_once_whole(
    proxy: ChannelProxy, writer: Redis, near: NearCache
) -> None:
    assert near.put("item:1", b"one", near.mark()) and near.put("item:2", b"two", near.mark())
    proxy.hold = True
    await writer.set("item:1", b"new")
    await held_pushes(proxy, 1)
    frame = bytes(proxy.held)
    assert frame.startswith(b">2\r\n") and frame.endswith(b"item:1\r\n")
    for _ in range(len(frame) - 1):  # one byte per read: the start of a frame waits for its end
        await proxy.release(1)
        await asyncio.sleep(0.005)
        assert near.get("item:1") == b"one" and near.active
    await proxy.release()
    await until(lambda: near.get("item:1") is None)
    assert near.get("item:2") == b"two"
    assert near.counts["invalidations"] == 1 and near.counts["resets"] == 0


async def test_many_frames_in_one_read_and_the_start_of_the_next(
    proxy: ChannelProxy, writer: Redis, near: NearCache
) -> None:
    keys = [f"item:{i}" for i in range(20)]
    for key in keys:
        assert near.put(key, key.encode(), near.mark())
    proxy.hold = True
    for key in keys:  # one push each
        await writer.set(key, b"new")
    await held_pushes(proxy, len(keys))
    await proxy.release(len(proxy.held) - 3)  # nineteen whole pushes and most of the twentieth
    await until(lambda: near.counts["invalidations"] == len(keys) - 1)
    assert [near.get(key) for key in keys] == [None] * (len(keys) - 1) + [b"item:19"]
    await proxy.release()
    await until(lambda: near.get("item:19") is None)
    assert near.counts["invalidations"] == len(keys) and near.counts["resets"] == 0


async def test_a_flushall_push_is_a_null_and_drops_everything(
    proxy: ChannelProxy, writer: Redis, near: NearCache
) -> None:
    assert near.put("item:1", b"one", near.mark())
    await writer.flushall()  # ``>2 invalidate _``: RESP3's null for "every key"
    await until(lambda: near.get("item:1") is None)
    assert near.counts["invalidations"] == 1 and near.active


@pytest.mark.parametrize("kind", ["attrib", "null", "push"])
async def test_replies_that_are_neither_pong_nor_error_leave_the_channel_up(
    kind: str, proxy: ChannelProxy, writer: Redis, near: NearCache
) -> None:
    """DEBUG PROTOCOL attrib (an attribute before its reply), null (``_``) and push (a push frame
    that is not an invalidation, then a reply), slipped in between the channel's PINGs."""
    assert near.put("item:1", b"one", near.mark()) and near.put("item:2", b"two", near.mark())
    for _ in range(3):
        await proxy.inject("DEBUG", "PROTOCOL", kind)
    await writer.set("item:1", b"new")
    await until(lambda: near.get("item:1") is None)
    await asyncio.sleep(0.6)  # several PINGs: each PONG is still recognised (a lost one resets)
    assert near.active and near.counts["resets"] == 0 and near.counts["invalidations"] == 1
    assert near.get("item:2") == b"two"


async def test_an_error_reply_on_the_channel_resets_it(
    proxy: ChannelProxy, near: NearCache, caplog: pytest.LogCaptureFixture
) -> None:
    assert near.put("item:1", b"one", near.mark())
    await proxy.inject("NO-SUCH-COMMAND")
    await until(lambda: near.counts["resets"] == 1)
    assert near.get("item:1") is None
    assert "Redis refused a tracking command: ERR unknown command" in caplog.text


async def test_bytes_that_are_not_resp_reset_it(
    proxy: ChannelProxy, near: NearCache, caplog: pytest.LogCaptureFixture
) -> None:
    assert near.put("item:1", b"one", near.mark())
    await proxy.to_client(b"?not resp\r\n")
    await until(lambda: near.counts["resets"] == 1)
    assert near.get("item:1") is None
    assert "unreadable data on the tracking connection" in caplog.text

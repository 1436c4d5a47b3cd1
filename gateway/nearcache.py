"""``NearCache``: process-local copies of hot cache entries, kept coherent by Redis.

A process's tracking channel asks Redis for server-assisted invalidation (``CLIENT TRACKING ON
BCAST PREFIX <prefix>``, RESP3): Redis then pushes the name of every key under the prefix that
anyone changes, deletes or lets expire, and the local copy is dropped. A server pushes only its own
changes, so the channel holds one connection to every server that may take a write: the one server,
or on Sentinel the master and its replicas, or on Cluster every node (``gateway.topology``). What
holds:

- **Read-your-writes on one host.** Before a local copy is served, the channel's sockets are read
  without blocking, in the request's own turn of the event loop (once per turn: one check covers
  every request that turn serves, since all of them were read from their sockets before it).
  Redis writes the invalidation to its socket before it answers the write, so once a write has
  answered its client, any request whose Redis step (the gateway's rate-limit and revocation
  check) ran after it finds the invalidation already in the socket's buffer, and gets the new
  value. Across hosts the push travels on its own TCP connection, so it is ordered only as the
  network orders it: typically within a network round trip of the write (docs/how-to/caching.md).
- **Losing the channel never serves stale data.** When a connection drops, is killed, stops
  answering its ``PING`` or its server restarts, every local copy is dropped and the cache is bypassed
  until tracking is re-established (with backoff, no restart).
- **No stale fill.** A value read from Redis is kept only if no invalidation of its key (and no
  channel reset) arrived since the read was sent; the read's own fill counts, so a miss is kept
  locally from the next read on.

Bounded by entries and bytes (least recently used first out) and by age.

Other parts may follow the same channel for keys of their own (``listen``): the stream guard
(``gateway.streams``) learns of every revocation this way, pushed by Redis, without a command per
open connection. A near cache with no prefix of its own is just that channel.

The channel's RESP3 is read by ``hiredis`` (push frames included), as redis-py reads it. The
check for waiting bytes is the POSIX ``FIONREAD`` ioctl; where there is none (Windows), the near
cache says so once and stays off: every read goes to Redis.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import hiredis

from gateway.connection import resolve_client
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.topology import Address, Endpoint, Topology, topology_of
from gateway.types import RedisSource

logger = logging.getLogger("gateway.nearcache")


class InvalidationListener(Protocol):
    """What a part that follows keys on the tracking channel is told (see ``NearCache.listen``).
    Called on the event loop; keep each call cheap and never blocking."""

    def invalidated(self, key: str) -> None:
        """A key under the listened prefix was changed, deleted or expired (by anyone)."""

    def flushed(self) -> None:
        """The database was flushed (``FLUSHDB``/``FLUSHALL``): every key is gone."""

    def lost(self, why: str) -> None:
        """The channel is gone: changes are not seen until it is back (``ready``)."""

    def ready(self) -> None:
        """The channel is (again) established: from now on every change is pushed."""


_READ_SIZE = 65536
_LOOK_GAP = 0.25  # seconds between looks at the servers when refused fills ask for them sooner
_MORE = object()  # hiredis: the frame is not all there yet (None and False are replies)


class NearCache:
    """Local copies of the Redis entries whose keys start with one of ``prefixes`` (full keys, the
    deployment's ``KEY_PREFIX`` included).

    ``start()`` in the app's lifespan (it returns at once; the channel connects in the background)
    and ``aclose()`` at shutdown. Until the channel is up, ``get`` finds nothing and ``put`` keeps
    nothing: the cache behaves as if it were not there. ``prefixes`` may be empty when the instance
    only carries listeners (``listen``).

    ``redis`` is the app's client (or a callable returning it): the channel opens a connection of its
    own to the same server, with the client's credentials and TLS settings. A process keeps at most
    ``max_entries`` copies and ``max_bytes`` bytes, each served for at most ``max_age`` seconds; the
    channel is pinged every ``ping_interval`` seconds and given ``connect_timeout`` seconds to
    connect. ``events`` hears hits, invalidations and resets. Give it to ``@cached(..., near=)``."""

    def __init__(
        self,
        *,
        redis: RedisSource,
        prefixes: Iterable[str],
        max_entries: int = 10_000,
        max_bytes: int = 64 * 1024 * 1024,
        max_age: float = 60.0,
        ping_interval: float = 1.0,
        connect_timeout: float = 1.0,
        events: GatewayEvents | None = None,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or max_age <= 0:
            raise ValueError("max_entries, max_bytes and max_age must be positive")
        #: The prefixes whose entries are kept here (``cached`` reads); ``tracked`` adds the listeners'.
        self.prefixes = tuple(prefixes)
        self._listeners: list[tuple[str, InvalidationListener]] = []
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_age = max_age
        self.ping_interval = ping_interval
        self.connect_timeout = connect_timeout
        self.events = events or NO_EVENTS
        self.counts = {"hits": 0, "invalidations": 0, "resets": 0, "evictions": 0}
        self._redis = redis
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._bytes = 0
        self._seq = 0  # one step per invalidation, reset and arming
        self._floor = 0  # reads marked before this are never kept
        self._invalidated: dict[str, int] = {}  # key -> the step of its latest invalidation
        self._channels: tuple[_Channel, ...] = ()  # every followed server's, once all required are armed
        self._followed: frozenset[Address] = frozenset()
        self._topology: Topology | None = None
        self._plain = False  # every channel is plain TCP (TLS may hold decrypted bytes: always recv)
        self._waiting = array.array("i", [0])
        self._ioctl: Callable[[int, int, array.array[int]], object] = _no_ioctl  # set by start()
        self._fionread = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._checked = False  # the socket was checked in this turn of the event loop
        self._wake = asyncio.Event()  # the watcher: a channel was lost, or look at the servers now
        self._armed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.disabled_reason: str | None = None

    @property
    def tracked(self) -> tuple[str, ...]:
        """Every prefix the channel asks Redis to push: the cache's and the listeners' (each once)."""
        return tuple(dict.fromkeys(self.prefixes + tuple(prefix for prefix, _ in self._listeners)))

    def listen(self, prefix: str, listener: InvalidationListener) -> None:
        """Tell ``listener`` of every change of a key under ``prefix`` (and of the channel's loss and
        return). Call before ``start``: the prefixes are given to Redis when tracking is turned on.
        Several listeners may share a prefix; different prefixes must not overlap (Redis refuses
        overlapping ``BCAST`` prefixes)."""
        if self._task is not None:
            raise RuntimeError("listen() before start(): tracking prefixes are fixed when the channel opens")
        for other in self.tracked:
            if other == prefix and prefix not in self.prefixes:
                continue  # another listener's: both are told
            if other.startswith(prefix) or prefix.startswith(other):
                raise ValueError(f"the tracked prefixes {other!r} and {prefix!r} overlap")
        self._listeners.append((prefix, listener))

    # -- the cache --------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Tracking is established: local copies are served and kept."""
        return bool(self._channels)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of cached values held now (bounded by ``max_bytes``)."""
        return self._bytes

    def get(self, key: str) -> bytes | None:
        """The local copy of ``key``, after every invalidation already in the socket is applied."""
        if not self._channels:
            return None
        self.drain()
        entry = self._entries.get(key)
        if entry is None:
            return None
        raw, stored = entry
        if time.monotonic() - stored > self.max_age:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        self.counts["hits"] += 1
        self.events.near_cache_event("hits")
        return raw

    def mark(self) -> int:
        """Take before sending a Redis read; give to :meth:`put` with its reply. (What is already
        in the socket is applied first, so an invalidation older than the read does not refuse it.)"""
        self.drain()
        return self._seq

    def put(self, key: str, raw: bytes, mark: int) -> bool:
        """Keep ``raw`` for ``key`` if nothing invalidated it since ``mark``."""
        if not self._channels or len(raw) > self.max_bytes:
            return False
        self.drain()
        if not self._channels or mark < self._floor or self._invalidated.get(key, -1) > mark:
            return False
        if not self.covers(key):
            return False
        self._drop(key)
        self._entries[key] = (raw, time.monotonic())
        self._bytes += len(raw)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
            self.counts["evictions"] += 1
        return True

    def covers(self, key: str) -> bool:
        """Whether a value of ``key`` read from Redis now comes from a server the channel follows
        (always on one server; on Sentinel and Cluster, not yet for a server that has just joined:
        the next look at the servers follows it, ``gateway.topology``)."""
        topology = self._topology
        if topology is None or not topology.changes:
            return True
        if topology.covers(key, self._followed):
            return True
        self._wake.set()  # look at the servers now
        return False

    def discard(self, key: str) -> None:
        """This process changed ``key``: drop the copy now, and refuse fills read before now."""
        self._invalidate(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(entry[0])

    def _invalidate(self, key: str) -> None:
        self._seq += 1
        self._drop(key)
        if len(self._invalidated) >= 4 * self.max_entries:
            self._invalidated.clear()  # forget old steps; reads marked before now are refused instead
            self._floor = self._seq
        self._invalidated[key] = self._seq

    def _flush(self) -> None:
        self._seq += 1
        self._floor = self._seq
        self._entries.clear()
        self._invalidated.clear()
        self._bytes = 0

    # -- the invalidation channel -----------------------------------------------------------

    async def start(self, wait: float = 1.0) -> None:
        """Start the channel; wait up to ``wait`` seconds for tracking (it goes on trying after)."""
        if not self.tracked:
            raise ValueError("give at least one key prefix to track (or a listener)")
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="near-cache tracking")
        if not self._channels:
            armed = asyncio.ensure_future(self._armed.wait())
            await asyncio.wait({armed, self._task}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            armed.cancel()

    async def aclose(self) -> None:
        """Stop the tracking channel (call it in the app's shutdown): local copies are dropped and
        every ``listen``-er is told the channel is lost."""
        task, self._task = self._task, None
        while task is not None and not task.done():  # a cancel some library swallows is sent again
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        if task is not None and not task.cancelled() and task.exception() is not None:
            logger.warning("near cache: the tracking task had failed: %r", task.exception())
        self._close()
        for _, listener in self._listeners:
            listener.lost("the channel was closed")

    def _readable(self, channel: _Channel) -> None:
        if channel in self._channels:  # the loop says so: read (an end of stream reads as no bytes)
            self._read(channel)

    def _next_turn(self) -> None:
        self._checked = False

    def drain(self, check: bool = True) -> None:
        """Apply every invalidation that has reached the channel's sockets (never blocks)."""
        channels = self._channels
        if not channels:
            return
        if check and self._plain:
            # Once per turn of the event loop is enough: whatever runs later in this turn was
            # scheduled before this check, so the data it answers to (a request, a Redis reply)
            # was read before it, and the invalidations Redis sent before that are applied now.
            # Whatever is scheduled from here on runs after ``_next_turn`` and checks again.
            if self._checked:
                return
            if self._loop is not None:
                self._checked = True
                self._loop.call_soon(self._next_turn)
            for channel in channels:
                try:  # bytes waiting? (one ioctl; cheaper than a recv that fails with EAGAIN)
                    self._ioctl(channel.fd, self._fionread, self._waiting)
                except OSError:
                    pass
                else:
                    if not self._waiting[0]:
                        continue
                self._read(channel)
                if self._channels is not channels:
                    return  # reset
            return
        for channel in channels:
            self._read(channel)
            if self._channels is not channels:
                return

    def _read(self, channel: _Channel) -> None:
        sock = channel.sock
        read = False
        while True:
            try:
                data = sock.recv(_READ_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
                break
            except OSError as exc:
                self._reset(f"the tracking connection failed: {exc} ({channel.name})")
                return
            if not data:
                self._reset(f"Redis closed the tracking connection ({channel.name})")
                return
            channel.reader.feed(data)
            read = True
            if len(data) < _READ_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                break
        if read:
            self._apply(channel)

    def _apply(self, channel: _Channel) -> None:
        """Act on every whole frame the reader holds (a frame's start waits there for its end)."""
        reader = channel.reader
        while channel in self._channels:
            try:
                frame = reader.gets()
            except hiredis.ProtocolError as exc:
                self._reset(f"unreadable data on the tracking connection: {exc} ({channel.name})")
                return
            if frame is _MORE:
                return
            self._on_frame(channel, frame)

    def _on_frame(self, channel: _Channel, frame: Any) -> None:
        # hiredis gives a RESP3 attribute as a reply of its own (a list): ignored like any other
        # reply that is neither a PONG nor an error.
        if isinstance(frame, hiredis.PushNotification):
            if len(frame) >= 2 and frame[0] == b"invalidate":
                keys = frame[1]
                if keys is None:  # FLUSHDB / FLUSHALL
                    self._flush()
                    self._count("invalidations")
                    for _, listener in self._listeners:
                        listener.flushed()
                    return
                for raw in keys:
                    key = raw.decode("utf-8", "surrogateescape")
                    if self._listeners and not key.startswith(self.prefixes):
                        for prefix, listener in self._listeners:
                            if key.startswith(prefix):
                                listener.invalidated(key)
                        continue
                    self._invalidate(key)
                    self._count("invalidations")
            return
        if frame == b"PONG":
            channel.pong_due = None
        elif isinstance(frame, hiredis.ReplyError):
            self._reset(f"Redis refused a tracking command: {frame} ({channel.name})")

    def _count(self, event: str) -> None:
        self.counts[event] += 1
        self.events.near_cache_event(event)

    def _reset(self, why: str) -> None:
        if not self._channels:
            return
        logger.warning("near cache: %s; local copies dropped, bypassed until tracking is back", why)
        self._close()
        self._count("resets")
        self._wake.set()
        for _, listener in self._listeners:
            listener.lost(why)

    def _close(self) -> None:
        channels, self._channels = self._channels, ()
        self._followed = frozenset()
        self._armed.clear()
        self._flush()
        for channel in channels:
            channel.close()

    async def _run(self) -> None:
        try:
            self._ioctl, self._fionread = _fionread()
        except ImportError as exc:
            self.disabled_reason = f"this platform has no FIONREAD ioctl to check the tracking connection ({exc})"
            logger.warning("near cache off: %s", self.disabled_reason)
            return
        delay, failing = 0.05, False
        while True:
            client = resolve_client(self._redis)
            if client is None:  # the app's lifespan has not made it yet
                await asyncio.sleep(delay)
                continue
            if self._topology is None or self._topology.client is not client:
                try:
                    self._topology = topology_of(client)
                except TypeError as exc:
                    self.disabled_reason = str(exc)
                    logger.warning("near cache off: %s", self.disabled_reason)
                    return
            try:
                channels = await self._open(await self._topology.endpoints(), required=True)
            except Exception as exc:
                if not failing:
                    logger.warning("near cache: tracking not established (%s); retrying", exc)
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            failing = False
            armed_at = time.monotonic()
            try:
                self._arm(channels)
                await self._watch(self._topology)
            except Exception:  # a listener or the events sink failed: never leave the channel unwatched
                logger.exception("near cache: the tracking channel failed; starting it again")
                self._reset("the tracking channel failed")
            # A channel lost soon after it was armed (a flapping server) is not re-armed at once.
            if time.monotonic() - armed_at < 5.0:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
            else:
                delay = 0.05

    async def _open(self, endpoints: Iterable[Endpoint], *, required: bool) -> list[_Channel]:
        """Connect to each endpoint at once. A required one that fails fails them all (``required``);
        others that fail are left out, to be tried at the next look."""
        endpoints = list(endpoints)
        credentials: dict[int, tuple[str, ...] | None] = {}
        for endpoint in endpoints:  # asked at every connect, in the loop (a provider may be async)
            if endpoint.credentials is not None and id(endpoint.credentials) not in credentials:
                credentials[id(endpoint.credentials)] = tuple(await endpoint.credentials.get_credentials_async())
        opened = await asyncio.gather(
            *(asyncio.to_thread(self._connect, e, credentials.get(id(e.credentials))) for e in endpoints),
            return_exceptions=True,
        )
        channels: list[_Channel] = []
        error: BaseException | None = None
        for endpoint, result in zip(endpoints, opened, strict=True):
            if isinstance(result, BaseException):
                if required and endpoint.required and error is None:
                    error = result
                continue
            channels.append(_Channel(endpoint.address, *result, aliases=endpoint.aliases))
        if error is None and required and not channels:
            error = ConnectionError("no server to follow answered")
        if error is not None:
            for channel in channels:
                channel.close()
            raise error
        return channels

    def _arm(self, channels: list[_Channel]) -> None:
        self._flush()
        self._loop = asyncio.get_running_loop()
        self._checked = False
        self._wake.clear()
        self._channels = ()
        self._add(channels)
        self._armed.set()
        logger.info("near cache: tracking %s on %s", ", ".join(self.tracked), _names(self._channels))
        for _, listener in self._listeners:
            listener.ready()
        for channel in channels:
            if channel in self._channels:
                self._apply(channel)  # what came after the handshake's replies in its last read

    def _add(self, channels: list[_Channel]) -> None:
        assert self._loop is not None
        for channel in channels:
            self._loop.add_reader(channel.fd, self._readable, channel)
        self._channels += tuple(channels)
        self._followed = frozenset(
            address for channel in self._channels for address in (channel.address, *channel.aliases)
        )
        self._plain = not any(isinstance(channel.sock, ssl.SSLSocket) for channel in self._channels)

    async def _watch(self, topology: Topology) -> None:
        """PING each channel (a connection that stops answering is as good as lost) and, on Sentinel
        and Cluster, look at the servers: a new one is followed from now on."""
        looked = 0.0
        while self._channels:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.ping_interval):  # (3.11's wait_for can swallow a cancel)
                    await self._wake.wait()
            self._wake.clear()
            if (pause := looked + _LOOK_GAP - time.monotonic()) > 0:
                await asyncio.sleep(pause)  # woken by refusals: at most one look per _LOOK_GAP
            if not self._channels:
                return
            now = time.monotonic()
            for channel in self._channels:
                if channel.pong_due is not None and now > channel.pong_due:
                    self._reset(f"the tracking connection stopped answering ({channel.name})")
                    return
                if channel.pong_due is None:
                    try:
                        channel.sock.send(_command("PING"))
                    except OSError as exc:
                        self._reset(f"the tracking connection failed: {exc} ({channel.name})")
                        return
                    channel.pong_due = now + max(self.ping_interval, self.connect_timeout)
            if topology.changes:
                looked = time.monotonic()
                await self._look(topology)

    async def _look(self, topology: Topology) -> None:
        """Follow the servers that joined since the channel was armed (none is dropped here: a
        server that goes away closes its connection, which resets the channel)."""
        try:
            async with asyncio.timeout(max(self.connect_timeout, 0.1)):
                endpoints = await topology.endpoints()
            new = [e for e in endpoints if e.address not in self._followed]
            if not new:
                return
            channels = await self._open(new, required=False)
        except Exception as exc:  # the servers cannot be learned now: the followed ones still push
            logger.debug("near cache: could not look at the servers (%s)", exc)
            return
        if not self._channels:  # reset meanwhile
            for channel in channels:
                channel.close()
            return
        opened = {channel.address for channel in channels}
        missing = [e for e in new if e.required and e.address not in opened]
        if missing:  # a server that takes writes and cannot be followed: nothing local can be trusted
            for channel in channels:
                channel.close()
            self._reset(f"a server that takes writes cannot be followed ({_address_name(missing[0].address)})")
            return
        self._add(channels)
        logger.info("near cache: now also tracking %s", _names(channels))
        # What those servers took before they were followed was pushed to no one: drop every copy.
        self._flush()
        self._count("resets")
        for _, listener in self._listeners:
            listener.flushed()
        for channel in channels:
            self._apply(channel)

    def _connect(self, endpoint: Endpoint, credentials: tuple[str, ...] | None) -> tuple[socket.socket, hiredis.Reader]:
        """Open the tracking connection (blocking; run in a thread): connect (TLS as the client's own
        connections do), HELLO 3 with the client's credentials, name it, and turn tracking on. Returns
        the socket and its reader, which may already hold what followed the replies."""
        timeout = self.connect_timeout
        if isinstance(endpoint.address, str):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(timeout)
                sock.connect(endpoint.address)
            except BaseException:
                sock.close()
                raise
        else:
            host, port = endpoint.address
            sock = socket.create_connection((host, port), timeout=timeout)
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if endpoint.tls is not None:  # the host name checked as asyncio checks it for the client
                    sock = endpoint.tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        try:
            hello: list[str | bytes | int] = ["HELLO", 3]
            if credentials:  # as redis-py sends them: a lone password is the default user's
                hello += ["AUTH", *(("default", *credentials) if len(credentials) == 1 else credentials)]
            commands: list[list[str | bytes | int]] = [
                hello,
                ["CLIENT", "SETNAME", "kapi-near-cache"],
                ["CLIENT", "TRACKING", "ON", "BCAST", *(item for p in self.tracked for item in ("PREFIX", p))],
            ]
            sock.sendall(b"".join(_command(*command) for command in commands))
            reader, replies = _reader(), list[Any]()
            while len(replies) < len(commands):
                reply = reader.gets()
                if reply is _MORE:
                    chunk = sock.recv(_READ_SIZE)
                    if not chunk:
                        raise ConnectionError("Redis closed the connection")
                    reader.feed(chunk)
                elif not isinstance(reply, list):  # a push frame or an attribute is not a reply
                    replies.append(reply)
            for reply in replies:
                if isinstance(reply, hiredis.ReplyError):
                    raise reply
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock, reader


class _Channel:
    """One followed server's tracking connection."""

    __slots__ = ("address", "aliases", "fd", "pong_due", "reader", "sock")

    def __init__(
        self, address: Address, sock: socket.socket, reader: hiredis.Reader, *, aliases: tuple[Address, ...] = ()
    ) -> None:
        self.address = address
        self.aliases = aliases
        self.sock = sock
        self.reader = reader
        self.fd = sock.fileno()
        self.pong_due: float | None = None

    @property
    def name(self) -> str:
        return _address_name(self.address)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self.fd)
        with contextlib.suppress(OSError):
            self.sock.close()


def _names(channels: Iterable[_Channel]) -> str:
    return ", ".join(channel.name for channel in channels)


def _address_name(address: Address) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def _command(*parts: str | bytes | int) -> bytes:
    """One command in RESP, as a RESP array of bulk strings."""
    packed: bytes = hiredis.pack_command(parts)  # type: ignore[arg-type]  # the stub says a 1-tuple; any length is fine
    return packed


def _reader() -> hiredis.Reader:
    """A RESP3 reader: bytes as they come, error replies as ``hiredis.ReplyError`` values."""
    return hiredis.Reader(notEnoughData=_MORE)


def _fionread() -> tuple[Callable[[int, int, array.array[int]], object], int]:
    """``fcntl.ioctl`` and ``FIONREAD``: how many bytes a socket holds. POSIX only, so imported
    here, when a near cache starts, not with the module (``ImportError`` where they do not exist)."""
    import fcntl
    import termios

    return fcntl.ioctl, termios.FIONREAD


def _no_ioctl(fd: int, request: int, buffer: array.array[int], /) -> object:
    raise OSError("no FIONREAD ioctl: read the socket instead")


__all__ = ["NearCache"]

"""``Feed``: live listing changes, for ``GET /listings/events`` (the handlers are ``service.live``).

Every listing write adds one entry to a Redis Stream (``listings:events``) in the same script that
deletes ``listing:{id}`` and bumps the search generation (``gateway.cache.Publish``), so the stream
holds the writes in the order they invalidated, across every instance. It is capped (``XADD MAXLEN ~
FEED_MAX_LEN``), so a client that reconnects with the id of the last event it saw gets what it missed
while that is still kept.

One reader per process (``Feed.start``): a task that blocks in ``XREAD`` on a connection of its own
(never one of the pool's) and hands each entry to the open feeds (``Subscription``), each with its
city filter and a bounded buffer; a feed whose client falls ``FEED_BUFFER`` events behind is closed
(the client resumes from its last id).

When an entry is not there to give, the feed says so with a ``reset`` event ("fetch the listings
again, then carry on"): a resume point older than what the stream keeps, an id the stream never
gave, a stream Redis lost, and writes made while Redis could not be reached. (Their invalidations
wait in the database outbox; their events are not published late, which would put them after later
writes' events. When the outbox delivers, one ``reset`` goes out instead: ``announce_reset``.)

Stream entry fields (this module writes them, through ``Publish``, and reads them): ``type``
(``created``, ``updated``, ``deleted`` or ``reset``), ``id`` (the listing's), ``listing`` (its JSON as
``GET /listings/{id}`` returns it, ``null`` when deleted), ``cities`` (the folded cities the change
concerns, before and after, ``\\x1f``-separated), ``reason`` (a reset's).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple

import orjson
from redis.exceptions import ResponseError

from gateway.cache import Publish
from gateway.connection import resolve_client
from gateway.errors import REDIS_ERRORS, RedisUnavailable
from gateway.types import RedisClient, RedisSource
from service.search import fold

logger = logging.getLogger("service.feed")

ChangeType = Literal["created", "updated", "deleted"]
RESET = "reset"
_SEPARATOR = "\x1f"  # between cities (fold turns control characters into spaces)
_ID = re.compile(r"^(\d{1,20})-(\d{1,20})$")
_MAX_PART = 2**64 - 1

#: Why a feed was told to start over.
LOST_WRITES = "listing changes made while Redis was unreachable were not published; fetch the listings again"
TRIMMED = "events after this id are no longer kept; fetch the listings again"
UNKNOWN_ID = "this event id is not from this stream; fetch the listings again"
STREAM_LOST = "the event stream was lost (Redis restarted without it); fetch the listings again"

#: Why a feed was closed.
FELL_BEHIND = "fell behind: reconnect with the last event id to get the rest"
SHUTTING_DOWN = "the server is shutting down"


class Change(NamedTuple):
    """One listing write, as the feed tells it: ``listing`` is the listing as ``GET`` returns it (None
    when deleted); ``cities`` every city it concerns (before and after an update that moves it), as
    written."""

    type: ChangeType
    listing_id: int
    listing: dict[str, Any] | None
    cities: Iterable[str]


def parse_event_id(text: str) -> tuple[int, int] | None:
    """A stream entry id (``1718000000000-0``) as a comparable pair, or None when it is not one."""
    match = _ID.match(text)
    if match is None:
        return None
    ms, seq = int(match[1]), int(match[2])
    return (ms, seq) if ms <= _MAX_PART and seq <= _MAX_PART else None


def _id_text(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


class Event:
    """One stream entry, ready to send: ``sse`` (the SSE frame, bytes) and ``ws`` (the WebSocket
    message, text), built once however many feeds send it."""

    __slots__ = ("cities", "id", "key", "sse", "type", "ws")

    def __init__(self, key: tuple[int, int], type_: str, payload: dict[str, Any], cities: frozenset[str]) -> None:
        self.key = key
        self.id = _id_text(key)
        self.type = type_
        self.cities = cities
        data = orjson.dumps(payload)
        named = b"event: reset\n" if type_ == RESET else b""
        self.sse = b"id: " + self.id.encode() + b"\n" + named + b"data: " + data + b"\n\n"
        self.ws = orjson.dumps({"event_id": self.id, **payload}).decode()

    def matches(self, city: str | None) -> bool:
        """Whether a feed filtered by ``city`` (folded; None: every city) gets it. A reset goes to all."""
        return city is None or self.type == RESET or city in self.cities

    @classmethod
    def reset(cls, key: tuple[int, int], reason: str) -> Event:
        return cls(key, RESET, {"type": RESET, "reason": reason}, frozenset())

    @classmethod
    def from_entry(cls, entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> Event | None:
        """The event of a stream entry, or None for an entry this module did not write."""
        key = parse_event_id(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
        type_ = fields.get(b"type", b"").decode()
        if key is None:
            return None
        if type_ == RESET:
            return cls.reset(key, fields.get(b"reason", b"").decode() or LOST_WRITES)
        if type_ not in ("created", "updated", "deleted") or not fields.get(b"id", b"").isdigit():
            return None
        listing = fields.get(b"listing") or b"null"
        payload = {"type": type_, "id": int(fields[b"id"]), "listing": orjson.Fragment(listing)}
        cities = frozenset(city for city in fields.get(b"cities", b"").decode().split(_SEPARATOR) if city)
        return cls(key, type_, payload, cities)


class Closed(Exception):
    """The feed was closed by the server: ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """One open feed: the events for its city (or every city), in stream order, each once. Made by
    :meth:`Feed.subscribe`; :meth:`next` gives the next event, catching up from the stream first
    when the feed resumes; :meth:`close` ends it."""

    def __init__(self, feed: Feed, city: str | None, buffer: int) -> None:
        self.feed = feed
        self.city = city
        self.buffer = buffer
        self.last: tuple[int, int] | None = None  # the last event given (or skipped by the filter)
        self.catching_up = False
        self.closed: str | None = None
        self._ready: collections.deque[Event] = collections.deque()  # given before the live ones
        self._live: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()

    def offer(self, event: Event) -> None:
        """From the reader: a new entry for this feed. A full buffer closes the feed."""
        if self.closed is not None or not event.matches(self.city):
            return
        if len(self._live) >= self.buffer:
            self.close(FELL_BEHIND)
            return
        self._live.append(event)
        self._wake.set()

    def close(self, reason: str) -> None:
        if self.closed is None:
            self.closed = reason
            self._live.clear()
            self._ready.clear()
        self.feed._subscribers.discard(self)
        self._wake.set()

    async def next(self, idle: float | None = None) -> Event | None:
        """The next event; None when ``idle`` seconds pass with nothing new (for a heartbeat).
        Raises :class:`Closed` once the feed is closed (a slow client, the server shutting down)."""
        while True:
            if self.closed is not None:
                raise Closed(self.closed)
            if self._ready:
                return self._give(self._ready.popleft())
            if self.catching_up:
                await self._catch_up()
                continue
            while self._live:
                event = self._live.popleft()
                if self.last is None or event.key > self.last:
                    return self._give(event)
            self._wake.clear()
            if idle is None:
                await self._wake.wait()
                continue
            try:
                async with asyncio.timeout(idle):
                    await self._wake.wait()
            except TimeoutError:
                return None

    def _give(self, event: Event) -> Event:
        self.last = event.key
        return event

    async def _catch_up(self) -> None:
        """One page of the entries after ``last`` from the stream (the live ones wait meanwhile)."""
        assert self.last is not None
        page, end = await self.feed.entries_after(self.last, count=self.feed.page)
        if end is None:
            self.catching_up = False
            return
        self._ready.extend(event for event in page if event.key > self.last and event.matches(self.city))
        self.last = max(self.last, end)  # (what the filter left out is never looked at again)

    def _start_after(self, last: tuple[int, int], reset: str | None) -> None:
        self.last = last
        if reset is not None:
            self._ready.append(Event.reset(last, reset))
        else:
            self.catching_up = True


class Feed:
    """The listing events of one process: :meth:`publication` for the write path, :meth:`subscribe`
    for the handlers, one reader task (:meth:`start`, :meth:`aclose`) between them.

    ``stream`` is the stream's full key (``Keys``), ``max_len`` its approximate cap, ``buffer`` the
    events a feed may fall behind before it is closed, ``block`` the seconds one ``XREAD`` waits."""

    def __init__(
        self,
        *,
        redis: RedisSource,
        stream: str,
        max_len: int = 10_000,
        buffer: int = 1000,
        block: float = 5.0,
        ttl: int = 30 * 86400,
        page: int = 100,
    ) -> None:
        if max_len < 1 or buffer < 1 or block <= 0:
            raise ValueError("max_len and buffer must be at least 1, block positive")
        self.stream = stream
        self.max_len = max_len
        self.buffer = buffer
        self.block = block
        self.ttl = ttl
        self.page = page
        self._redis = redis
        self._subscribers: set[Subscription] = set()
        self._reader: asyncio.Task[None] | None = None
        self._position: tuple[int, int] | None = None  # the reader's: the last entry it handed out
        self._started = asyncio.Event()
        self._failing = False

    # The write path

    def publication(self, change: Change) -> Publish:
        """The stream entry of one write, for ``CachedFunction.invalidate(..., publish=)``."""
        cities = sorted({folded for city in change.cities if (folded := fold(city))})
        return Publish(
            self.stream,
            {
                "type": change.type,
                "id": change.listing_id,
                "listing": orjson.dumps(change.listing),
                "cities": _SEPARATOR.join(cities),
            },
            max_len=self.max_len,
            ttl=self.ttl,
        )

    async def announce_reset(self, reason: str = LOST_WRITES) -> None:
        """Add a ``reset`` entry: every feed, whatever its city, is told to fetch the listings again.
        Raises ``RedisUnavailable`` when Redis cannot be reached."""
        client = self._client()
        try:
            await client.xadd(self.stream, {"type": RESET, "reason": reason}, maxlen=self.max_len, approximate=True)
            await client.expire(self.stream, self.ttl)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc

    # The handlers

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    async def subscribe(self, *, city: str | None = None, after: str | None = None) -> Subscription:
        """Open a feed: live events from now on, or, with ``after`` (an event id the client saw), the
        stream's entries after it first (or a ``reset`` when they are not all there). ``city`` filters
        (Turkish-aware, the whole value). Raises ``ValueError`` for an ``after`` that is no event id
        and ``RedisUnavailable`` when resuming needs Redis and cannot have it."""
        last = parse_event_id(after) if after is not None else None
        if after is not None and last is None:
            raise ValueError(f"{after[:60]!r} is not an event id (such as 1718000000000-0)")
        subscription = Subscription(self, fold(city) if city is not None else None, self.buffer)
        self._subscribers.add(subscription)  # first: nothing written from here on is missed
        if last is None:
            return subscription
        try:
            info = await self._stream_info(self._client())
        except BaseException:
            subscription.close(SHUTTING_DOWN)
            raise
        subscription._start_after(*_resume_point(last, info))
        return subscription

    async def entries_after(self, last: tuple[int, int], *, count: int) -> tuple[list[Event], tuple[int, int] | None]:
        """Up to ``count`` of the stream's entries after ``last``: their events (entries this module did
        not write are left out) and the id of the last entry read (None: there are none). Raises
        ``RedisUnavailable``."""
        try:
            entries: Any = await self._client().xrange(self.stream, min=f"({_id_text(last)}", count=count)
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        events = [event for entry_id, fields in entries if (event := Event.from_entry(entry_id, fields)) is not None]
        end = parse_event_id(_text(entries[-1][0])) if entries else None
        return events, end

    # The reader

    async def start(self, wait: float = 1.0) -> None:
        """Start the reader; wait up to ``wait`` seconds for it to learn where the stream ends (later,
        when Redis cannot be reached now: start-up does not wait for Redis)."""
        if self._reader is None:
            self._position, self._started = None, asyncio.Event()  # (a new lifespan may have a new Redis)
            self._reader = asyncio.create_task(self._run(), name="listing feed reader")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await self._started.wait()

    async def aclose(self) -> None:
        """Stop the reader and close every open feed (``SHUTTING_DOWN``)."""
        reader, self._reader = self._reader, None
        while reader is not None and not reader.done():
            # Again until it ends: on Python 3.11 a cancel that lands as a connection is made can be
            # swallowed (asyncio.wait_for, which the connect goes through, returns the connection).
            reader.cancel()
            await asyncio.wait({reader}, timeout=0.1)
        for subscription in list(self._subscribers):
            subscription.close(SHUTTING_DOWN)

    def _client(self) -> RedisClient:
        client = resolve_client(self._redis)
        if client is None:
            raise RedisUnavailable("no Redis client")
        return client

    async def _stream_info(self, client: RedisClient) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = await client.xinfo_stream(self.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return None
            raise RedisUnavailable(f"ResponseError: {exc}") from exc
        except REDIS_ERRORS as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return info

    async def _run(self) -> None:
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (or answering errors): try again shortly
                if not self._failing:
                    logger.warning("listing feed: reading %s failed (%s); retrying every second", self.stream, exc)
                self._failing = True
                await asyncio.sleep(1.0)

    async def _read(self) -> None:
        client = self._client()
        info = await self._stream_info(client)
        tail = _last_generated(info)
        if self._position is None:
            self._position = tail
        elif tail < self._position:  # a new stream (Redis lost the old one): its ids start again
            self._fan_out(Event.reset(tail, STREAM_LOST))
            self._position = (0, 0)
        self._started.set()
        if self._failing:
            logger.warning("listing feed: reading %s again", self.stream)
            self._failing = False
        connection = _blocking_connection(client, self.stream)
        try:
            block_ms = int(self.block * 1000)
            while True:
                await connection.send_command(
                    "XREAD", "COUNT", 500, "BLOCK", block_ms, "STREAMS", self.stream, _id_text(self._position)
                )
                async with asyncio.timeout(self.block + 5.0):  # (a silent Redis: reconnect)
                    reply = await connection.read_response(timeout=math.inf)
                for entry_id, fields in _entries(reply):
                    key = parse_event_id(entry_id.decode() if isinstance(entry_id, bytes) else entry_id)
                    if key is None or key <= self._position:
                        continue
                    self._position = key
                    if not self._subscribers:
                        continue  # (nobody to build the event for)
                    event = Event.from_entry(entry_id, _field_map(fields))
                    if event is not None:
                        self._fan_out(event)
        finally:
            await connection.disconnect(nowait=True)

    def _fan_out(self, event: Event) -> None:
        for subscription in list(self._subscribers):
            subscription.offer(event)


def _resume_point(last: tuple[int, int], info: Mapping[str, Any] | None) -> tuple[tuple[int, int], str | None]:
    """Where a feed resuming after ``last`` starts, and why it must start over (None: it need not).
    Trimming takes the oldest entries, so some entry after ``last`` is gone when ``last`` is older than
    the first entry kept and some entry was ever removed (or, with none kept, when any came after it).
    (A client whose own last event was the newest one trimmed is told to start over too: harmless.)"""
    tail = _last_generated(info)
    if info is None:  # no stream (never written, or lost): only "from the very beginning" is still whole
        return tail, None if last == (0, 0) else STREAM_LOST
    if last > tail:
        return tail, UNKNOWN_ID
    first = info.get("first-entry")
    first_key = parse_event_id(_text(first[0])) if first else None
    if first_key is None:
        gone = last < tail
    else:
        added, length = info.get("entries-added"), info.get("length")  # (Redis 7; before it, assume trimmed)
        removed = added is None or length is None or int(added) > int(length)
        gone = last < first_key and removed
    deleted = _id_field(info, "max-deleted-entry-id")  # an XDEL after it, which trimming does not count
    gone = gone or (deleted is not None and last < deleted)
    return (tail, TRIMMED) if gone else (last, None)


def _last_generated(info: Mapping[str, Any] | None) -> tuple[int, int]:
    if info is None:
        return (0, 0)
    return _id_field(info, "last-generated-id") or (0, 0)


def _id_field(info: Mapping[str, Any], name: str) -> tuple[int, int] | None:
    value = info.get(name)
    return parse_event_id(_text(value)) if value is not None else None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(reply: Any) -> list[Any]:
    """The entries of an ``XREAD`` reply on one stream (RESP2: a list of [key, entries]; RESP3: a map)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for entries in reply.values() for entry in entries]
    return [entry for _, entries in reply for entry in entries]


def _field_map(fields: Any) -> dict[bytes, bytes]:
    if isinstance(fields, dict):
        return fields
    return dict(zip(fields[::2], fields[1::2], strict=True))


def _blocking_connection(client: RedisClient, key: str) -> Any:
    """A connection of the reader's own, outside the pool (an ``XREAD BLOCK`` would hold a pooled one),
    built as the client builds its own (TLS, credentials, Sentinel's master): on a cluster, to the node
    that holds ``key``. redis-py's connection API (``connection_class``, ``connection_kwargs``,
    ``send_command``, ``read_response(timeout=)``), as ``gateway.scripts`` uses it."""
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        return pool.connection_class(**pool.connection_kwargs)
    node = client.get_node_from_key(key)  # type: ignore[union-attr]
    if node is None:
        raise RedisUnavailable(f"no cluster node holds {key}")
    return node.connection_class(**node.connection_kwargs)

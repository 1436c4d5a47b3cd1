"""Long-lived connections under the gate: WebSockets and SSE streams.

The gateway checks a WebSocket handshake as it checks a request (authentication by the route
template's rule, revocation, the rate limit) and refuses it before accept with the same status and
headers HTTP would get (``answer``). What this module adds is what happens *after*: a connection
outlives the moment it was checked, and ``StreamGuard`` closes it **within a second of its token no
longer being valid**, on any instance sharing the Redis:

- the token is logged out (its ``blacklist:`` key is written), the user logs out everywhere
  (``logout_all:``), its login is ended (``session:``), or Redis lost its data (``epoch``, a flush):
  Redis pushes the change of those keys on the tracking channel (``NearCache.listen``), and the
  connections that depend on them are closed at once (a blacklisted token) or re-checked in one
  batched round trip (the rest);
- the token expires (``exp`` + leeway) or its login lapses unused: a timer per connection, then a
  re-check that never counts as use of the login.

Nothing is polled: no Redis command per open connection per second. When the channel is lost, no
change can be seen, so every open connection is closed with a "reconnect" code (``CLOSE_RETRY``),
and new ones are refused (503) until it is back. A WebSocket is closed with code 1008 and the reason
("token revoked", ...); an SSE stream ends with a last event ``event: close`` whose data says why.

``StreamGuard`` also caps the connections one user holds open at once across every instance
(``per_user``; the next gets 429): each holds a lease in ``streams:{user_id}``, renewed in one
batched round trip per process every third of the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from starlette.websockets import WebSocketDisconnect

from gateway.blacklist import TokenBlacklist, Verdict
from gateway.connection import require_client
from gateway.errors import RedisUnavailable
from gateway.nearcache import NearCache
from gateway.problem import CLOSE_POLICY, ProblemResponse, answer
from gateway.redis_keys import Keys
from gateway.scripts import ScriptSet
from gateway.tokens import Claims, new_id
from gateway.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CLOSE_POLICY", "CLOSE_RETRY", "StreamGuard", "answer", "serve_stream", "serve_websocket"]

logger = logging.getLogger("gateway.streams")

#: WebSocket close code when revocations cannot be followed (RFC 6455 "service restart"): reconnect.
CLOSE_RETRY = 1012

#: A browser's WebSocket cannot set headers: it offers its token as a subprotocol, ``bearer.<token>``.
BEARER_SUBPROTOCOL = "bearer."

_CLOSED_BY_CHANNEL = "revocations cannot be followed right now; reconnect"

Close = Callable[[str, bool], Awaitable[None]]


@dataclass(eq=False)
class _Stream:
    """One open connection the guard follows."""

    claims: Claims
    keys: tuple[str, ...]
    close: Close
    slot: str
    id: str = field(default_factory=new_id)
    timers: list[asyncio.TimerHandle] = field(default_factory=list)  # the expiry, then the idle check
    ended: bool = False


class StreamGuard:
    """Closes this process's long-lived connections when their tokens stop being valid (see the
    module docstring). ``channel`` is the process's tracking channel (a ``NearCache``; one with no
    prefixes of its own will do) and must be started after the guard is built; ``blacklist`` is the
    gateway's. ``per_user`` connections at most per user across every instance; ``lease`` seconds
    before a crashed process's slots free themselves. ``keys`` defaults to the blacklist's."""

    def __init__(
        self,
        *,
        blacklist: TokenBlacklist,
        channel: NearCache,
        keys: Keys | None = None,
        per_user: int = 10,
        lease: float = 60.0,
    ) -> None:
        if per_user < 1 or lease <= 0:
            raise ValueError("per_user must be at least 1 and lease positive")
        self.blacklist = blacklist
        self.channel = channel
        self.keys = keys or blacklist.keys
        self.per_user = per_user
        self.lease = lease
        self._blacklisted = self.keys("blacklist:")
        for family in ("blacklist:", "logout_all:", "session:", "epoch"):
            channel.listen(self.keys(family), self)
        self._live = False
        self._streams: set[_Stream] = set()
        self._by_key: dict[str, set[_Stream]] = {}
        self._pending: set[_Stream] = set()
        self._renewer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._scripts = ScriptSet("stream_slot")

    def __len__(self) -> int:
        return len(self._streams)

    async def aclose(self) -> None:
        """At shutdown (before the Redis client is closed): stop renewing, finish pending work."""
        self._live = False
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)

    # -- what the tracking channel says ------------------------------------------------------

    def ready(self) -> None:
        """The tracking channel is (back) up: every open stream is checked once, for what changed
        while it was away."""
        self._live = True
        self._recheck(self._streams)  # whatever changed while the channel was away

    def lost(self, why: str) -> None:
        """The tracking channel is gone (``why``): revocations cannot be followed, so every open
        stream is closed with a "reconnect" reason."""
        self._live = False
        if self._streams:
            logger.warning("revocation channel lost (%s): closing %d open stream(s)", why, len(self._streams))
        for stream in list(self._streams):
            self._end(stream, _CLOSED_BY_CHANNEL, retry=True)

    def flushed(self) -> None:
        """Redis was flushed: every open stream is checked again."""
        self._recheck(self._streams)

    def invalidated(self, key: str) -> None:
        """``key`` (a revocation, log-out mark, session or epoch key) changed: the streams that depend
        on it are closed (a blacklist entry) or checked again (anything else)."""
        streams = self._by_key.get(key)
        if not streams:
            return
        if key.startswith(self._blacklisted):  # written only to revoke: no need to ask
            for stream in list(streams):
                self._end(stream, Verdict.REVOKED.description)
        else:
            self._recheck(streams)

    # -- opening and closing -----------------------------------------------------------------

    async def open(self, claims: Claims, close: Close) -> _Stream | ProblemResponse:
        """Follow a connection of ``claims``'s token from now on, or the refusal to answer with:
        503 while revocations cannot be followed, 429 over the per-user cap. ``close(reason, retry)``
        is awaited (once) when the connection must end."""
        if not self._live:
            return ProblemResponse(
                503,
                "Live connections are unavailable while revocations cannot be followed.",
                headers={"Retry-After": "2"},
            )
        user = claims["sub"]
        stream = _Stream(claims, tuple(self.blacklist.check_keys(claims)), close, self.keys.user("streams", user))
        try:
            taken = await self._slot(stream)
        except RedisUnavailable:
            return ProblemResponse(503, "Live connections are unavailable right now.", headers={"Retry-After": "2"})
        if not taken:
            return ProblemResponse(
                429,
                f"Too many open streams for this user (at most {self.per_user}); close one first.",
                headers={"Retry-After": "5"},
            )
        if not self._live:  # the channel was lost while the slot was taken: nothing would follow it
            self._spawn(self._free(stream))
            detail = "Live connections are unavailable while revocations cannot be followed."
            return ProblemResponse(503, detail, headers={"Retry-After": "2"})
        # Followed first, checked second: a revocation pushed in between is seen by one of the two.
        self._streams.add(stream)
        for key in stream.keys:
            self._by_key.setdefault(key, set()).add(stream)
        loop = asyncio.get_running_loop()
        expires = claims["exp"] + self.blacklist.leeway - time.time()
        stream.timers.append(loop.call_later(max(0.0, expires), self._end, stream, "The token has expired."))
        self._recheck([stream])
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.create_task(self._renew(), name="stream leases")
        return stream

    def release(self, stream: _Stream) -> None:
        """The connection is over (however it ended): stop following it and free its slot."""
        self._forget(stream)
        self._spawn(self._free(stream))

    def _forget(self, stream: _Stream) -> None:
        stream.ended = True
        self._streams.discard(stream)
        self._pending.discard(stream)
        for timer in stream.timers:
            timer.cancel()
        stream.timers.clear()
        for key in stream.keys:
            followers = self._by_key.get(key)
            if followers is not None:
                followers.discard(stream)
                if not followers:
                    del self._by_key[key]

    def _end(self, stream: _Stream, reason: str, retry: bool = False) -> None:
        if stream.ended:
            return
        self._forget(stream)
        self._spawn(stream.close(reason, retry))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- checks ------------------------------------------------------------------------------

    def _recheck(self, streams: Any) -> None:
        """Check these streams in Redis, soon, all in one batched round trip."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(lambda: self._spawn(self._check_pending()))
        self._pending.update(streams)

    async def _check_pending(self) -> None:
        streams, self._pending = list(self._pending), set()
        results = await asyncio.gather(
            *(self.blacklist.stream_verdict(stream.claims) for stream in streams), return_exceptions=True
        )
        loop = asyncio.get_running_loop()
        for stream, result in zip(streams, results, strict=True):
            if stream.ended:
                continue
            if isinstance(result, BaseException):  # cannot tell: a stream is not kept unchecked
                self._end(stream, "The token cannot be checked right now; reconnect.", retry=True)
                continue
            verdict, left = result
            if verdict is not Verdict.VALID:
                self._end(stream, verdict.description)
                continue
            for key in self.blacklist.check_keys(stream.claims):
                # A key read from a server the channel does not follow yet makes it look at the servers
                # now; once it follows the new one, every stream is checked again (``flushed``).
                if not self.channel.covers(key):
                    break
            if left is not None:  # the login lapses unless used: look again just after it would
                if len(stream.timers) > 1:
                    stream.timers.pop().cancel()  # one idle check per stream, the latest
                stream.timers.append(loop.call_later(left + 0.05, self._recheck, [stream]))

    # -- the per-user cap --------------------------------------------------------------------

    async def _slot(self, stream: _Stream, *, renew: bool = False) -> bool:
        scripts = self._scripts.bind(require_client(self.blacklist.redis), self.blacklist.breaker.events)
        args = [stream.id, self.per_user, int(self.lease * 1000), "renew" if renew else "take"]
        taken = await self.blacklist.breaker.call(lambda: scripts["stream_slot"](keys=[stream.slot], args=args))
        return bool(int(taken))

    async def _free(self, stream: _Stream) -> None:
        with contextlib.suppress(RedisUnavailable):
            client = require_client(self.blacklist.redis)
            await self.blacklist.breaker.call(lambda: client.zrem(stream.slot, stream.id))

    async def _renew(self) -> None:
        while self._streams:
            await asyncio.sleep(self.lease / 3)
            streams = [stream for stream in self._streams if not stream.ended]
            await asyncio.gather(*(self._slot(stream, renew=True) for stream in streams), return_exceptions=True)


# -- serving a connection under the guard ----------------------------------------------------


def hide_bearer_subprotocol(scope: Scope) -> bool:
    """Remove a ``bearer.<token>`` subprotocol from the scope (its list and its header) so the app
    never sees the token; True when there was one."""
    offered: list[str] = list(scope.get("subprotocols", ()))
    kept = [name for name in offered if not name.startswith(BEARER_SUBPROTOCOL)]
    if len(kept) == len(offered):
        return False
    scope["subprotocols"] = kept
    headers = [(name, value) for name, value in scope["headers"] if name != b"sec-websocket-protocol"]
    if kept:
        headers.append((b"sec-websocket-protocol", ", ".join(kept).encode()))
    scope["headers"] = headers
    return True


async def serve_websocket(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    claims: Claims | None,
    guard: StreamGuard | None,
) -> None:
    """Run the app for a WebSocket that passed the gate: followed by ``guard`` when it carries a
    token, and closed (code 1008 or ``CLOSE_RETRY``, with a reason) when its token stops being valid;
    after that the app's sends raise ``WebSocketDisconnect``, as for a client that left."""
    carried_token = hide_bearer_subprotocol(scope)
    offered = scope.get("subprotocols", [])
    lock = asyncio.Lock()
    closed: tuple[int, str] | None = None

    async def close(reason: str, retry: bool) -> None:
        nonlocal closed
        async with lock:
            if closed is None:
                closed = (CLOSE_RETRY if retry else CLOSE_POLICY, reason)
                with contextlib.suppress(Exception):  # the client may be gone already
                    await send({"type": "websocket.close", "code": closed[0], "reason": reason})

    async def guarded_send(message: Message) -> None:
        if closed is not None:
            raise WebSocketDisconnect(closed[0], closed[1])
        if message["type"] == "websocket.accept" and carried_token and offered and not message.get("subprotocol"):
            message["subprotocol"] = offered[0]  # a browser that offered protocols fails a handshake naming none
        async with lock:
            if closed is not None:
                raise WebSocketDisconnect(closed[0], closed[1])
            await send(message)

    stream = None
    if guard is not None and claims is not None:
        opened = await guard.open(claims, close)
        if isinstance(opened, ProblemResponse):
            await answer(opened, scope, receive, send)
            return
        stream = opened
    try:
        await app(scope, receive, guarded_send)
    except WebSocketDisconnect:
        if closed is None:
            raise
    finally:
        if stream is not None:
            guard.release(stream)  # type: ignore[union-attr]


def is_event_stream(message: Message) -> bool:
    """An ``http.response.start`` of a ``text/event-stream`` response (SSE)."""
    for name, value in message.get("headers", ()):
        if name.lower() == b"content-type":
            return bytes(value).lower().startswith(b"text/event-stream")
    return False


async def serve_stream(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, *, claims: Claims, guard: StreamGuard
) -> None:
    """Run the app for an authenticated ``GET`` (SSE is a GET: callers wrap nothing else); if it
    answers with an SSE stream, the stream is followed by ``guard`` and ended with a last event
    (``event: close``, data ``{"type": "close", "reason", "retry"}``) when its token stops being
    valid. The app's later sends are dropped, and the server tells it the client is gone
    (``http.disconnect``). An ordinary response passes with one check of its start."""
    sender = _StreamSend(send, scope, receive, claims, guard)
    try:
        await app(scope, receive, sender)
    finally:
        if isinstance(sender.stream, _Stream):
            guard.release(sender.stream)


class _StreamSend:
    """``serve_stream``'s ``send``: one object per request, a lock only once a stream is followed (an
    ordinary response costs one check of its start)."""

    __slots__ = ("claims", "closed", "guard", "lock", "receive", "scope", "send", "stream")

    def __init__(self, send: Send, scope: Scope, receive: Receive, claims: Claims, guard: StreamGuard) -> None:
        self.send, self.scope, self.receive, self.claims, self.guard = send, scope, receive, claims, guard
        self.stream: _Stream | Literal[False] | None = None  # None: not started; False: an ordinary response
        self.lock: asyncio.Lock | None = None
        self.closed = False

    async def __call__(self, message: Message) -> None:
        stream = self.stream
        if stream is False:
            await self.send(message)
            return
        if self.closed:
            return
        if stream is None:
            if message.get("status", 200) != 200 or not is_event_stream(message):
                self.stream = False
                await self.send(message)
                return
            self.lock = asyncio.Lock()
            opened = await self.guard.open(self.claims, self.close)
            if isinstance(opened, ProblemResponse):
                self.closed = True
                await opened(self.scope, self.receive, self.send)
                return
            self.stream = opened
        assert self.lock is not None
        async with self.lock:
            if not self.closed:
                await self.send(message)

    async def close(self, reason: str, retry: bool) -> None:
        assert self.lock is not None
        async with self.lock:
            if not self.closed:
                self.closed = True
                data = orjson.dumps({"type": "close", "reason": reason, "retry": retry})
                with contextlib.suppress(Exception):
                    await self.send({"type": "http.response.body", "body": b"event: close\ndata: " + data + b"\n\n",
                                     "more_body": False})  # fmt: skip

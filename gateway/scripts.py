"""Lua scripts shipped as package data, and how they are run: EVALSHA with a SCRIPT LOAD fallback on
NOSCRIPT (a restarted Redis has forgotten them), and *automatic pipelining*: the script calls that
concurrent requests make in the same event-loop turn go to Redis together, in one pipeline.

Each request still sends exactly one command per script call (and waits one round trip); what is
shared is the client-side cost of a command (connection checkout, write, timeout bookkeeping), which
in redis-py's asyncio client is several times the cost of the Redis work itself.

This is a small custom transport on redis-py's connection API (``pool.get_connection``,
``pack_commands``, ``send_packed_command``, ``read_response``); ``tests/gateway/test_scripts.py``
holds the contract it relies on and fails loudly if a redis-py release changes it.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import secrets
import time
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any
from weakref import WeakKeyDictionary

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gateway.connection import check_client
from gateway.errors import RoundTripFailed
from gateway.events import NO_EVENTS, GatewayEvents


@cache
def lua_source(name: str) -> str:
    """The text of ``gateway/lua/<name>.lua``, with each ``--!include other`` line replaced by the
    text of ``other.lua`` (shared Lua functions, so composed scripts stay one round trip)."""
    text = files("gateway").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = [lua_source(line.split()[1]) if line.startswith("--!include ") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


@cache
def lua_sha(name: str) -> str:
    """The SHA-1 of the shipped script ``name`` as sent (includes resolved): what ``EVALSHA`` takes."""
    return hashlib.sha1(lua_source(name).encode()).hexdigest()


_NONCE_PREFIX = secrets.token_hex(6)
_nonce_counter = itertools.count()


def nonce() -> str:
    """A value unique across processes (random prefix) and within one (a counter), for script
    arguments such as lease tokens; no system call per request, unlike ``secrets``."""
    return f"{_NONCE_PREFIX}{next(_nonce_counter):x}"


_Call = tuple[str, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class _Deadline:
    """The read deadline of one round trip, tolerant of event-loop stalls.

    ``asyncio.timeout`` measures wall-clock time, so when another task blocks the loop past the
    deadline, the timeout fires before this task can read replies that arrived long ago. Here a
    deadline the loop itself overran (the timer fires late by more than ``stall``) is moved once,
    ``timeout`` into the future from the moment the loop came back: only time that this task could
    have spent reading counts against Redis.
    """

    def __init__(self, scope: asyncio.Timeout, timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.scope = scope
        self.timeout = timeout
        self.stall = max(0.005, timeout / 10)
        self.when = self.loop.time() + timeout
        self.extended = False
        self.handle = self.loop.call_at(self.when, self._fire)

    def _fire(self) -> None:
        now = self.loop.time()
        if not self.extended and now - self.when > self.stall:
            self.extended = True
            self.when = now + self.timeout
            self.handle = self.loop.call_at(self.when, self._fire)
            return
        self.scope.reschedule(now)  # expire: the ``async with`` raises TimeoutError

    def cancel(self) -> None:
        self.handle.cancel()


class ScriptRunner:
    """Runs scripts on one client, batching the calls of one event-loop turn into one pipeline.

    A script call is sent at most once: when a connection fails after a batch was written, its
    scripts may have run, so the batch fails (``RoundTripFailed``) instead of being sent again
    (a rotation would see its own write as reuse, a rate-limit hit would count twice). Stale pooled
    connections are caught before anything is written (a connection that has seen the server close
    it is replaced). NOSCRIPT replies are the one resend: Redis ran nothing. A client that would resend
    a batch itself (a ``RedisCluster`` with retries) is refused here (``gateway.connection.check_client``).
    """

    def __init__(self, client: Any, *, max_batch: int = 512, events: GatewayEvents | None = None) -> None:
        check_client(client)
        self.client = client
        self.max_batch = max_batch
        #: Told of each round trip (seconds, calls in the batch, succeeded), for metrics.
        self.events = events or NO_EVENTS
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks

    async def run(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run the shipped script ``name`` (``gateway/lua/{name}.lua``) with ``keys`` and ``args`` and
        return its reply; calls made in the same event-loop turn share one pipeline."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((name, keys, args, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = self._queue, []
        for start in range(0, len(batch), self.max_batch):
            task = asyncio.ensure_future(self._send(batch[start : start + self.max_batch]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[_Call]) -> None:
        started = time.perf_counter()
        try:
            try:
                results = await self._round_trip(batch)
                missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                if missing:  # a restarted Redis has forgotten the scripts: nothing ran; load and send those
                    for name in {batch[i][0] for i in missing}:
                        await self.client.script_load(lua_source(name))  # on a cluster: every primary
                    again = await self._round_trip([batch[i] for i in missing])
                    for i, result in zip(missing, again, strict=True):
                        results[i] = result
            except Exception as exc:
                self.events.redis_round_trip(time.perf_counter() - started, len(batch), False)
                failed = RoundTripFailed(f"{type(exc).__name__}: {exc}")
                failed.round_trip = failed  # type: ignore[attr-defined]
                raise failed from exc
            self.events.redis_round_trip(time.perf_counter() - started, len(batch), True)
            marker = object()  # error replies of one round trip count as one failure
            for (_, _, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    result.round_trip = marker  # type: ignore[attr-defined]
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as exc:  # every caller of the batch sees the same failure
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _round_trip(self, batch: list[_Call]) -> list[Any]:
        if hasattr(self.client, "connection_pool"):
            return await self._send_on_connection(batch)
        return await self._send_pipeline(batch)  # a cluster client: its pipeline routes each command

    async def _send_on_connection(self, batch: list[_Call]) -> list[Any]:
        """One write and one read deadline for the whole batch, on one pooled connection. (redis-py's
        pipeline sets up a timeout per reply, which costs more than the replies.) Error replies
        (OOM, READONLY, a script error) are that caller's result; the rest of the batch still reads."""
        # Two things redis-py 8's own pipeline path (``Pipeline.execute``, ``_execute_pipeline``) does are
        # skipped here (read in 8.2; tests/test_upstream_contracts.py::
        # test_redis_py_pipeline_prepares_nothing_for_script_calls fails if either changes meaning):
        # - ``_himport_exec.pipeline_prepares``: the HIMPORT fieldsets the batch's ``HIMPORT SET``s need
        #   PREPAREd on this connection, after DISCARDing there any the client's registry has dropped since
        #   the connection last reconciled. A batch here is EVALSHA only, and the shipped scripts call no
        #   HIMPORT, so nothing needs preparing. The DISCARDs are deferred, not lost: the connection's
        #   reconciled revision stays behind, so the next ``HIMPORT SET`` or pipeline redis-py runs on it
        #   sends them, as after any single command (``execute_command`` does not reconcile either).
        # - ``record_operation_duration`` and ``record_error_count``: redis-py's OpenTelemetry metrics, which
        #   return at once unless its observability is enabled and keep no state anything else reads. So
        #   these calls are missing only from redis-py's own metrics; every round trip is reported to
        #   ``self.events.redis_round_trip`` (the service's ``kapi_redis_round_trip_seconds``).
        pool = self.client.connection_pool
        connection = await pool.get_connection()
        try:
            if connection.is_connected and await connection.can_read():
                # Closed by the server (it restarted) or holding stray bytes: nothing is written yet, so
                # a fresh connection is safe. (redis-py's pool skips this check when its maintenance
                # notifications are on, the default.)
                await connection.disconnect()
            commands = [("EVALSHA", lua_sha(name), len(keys), *keys, *args) for name, keys, args, _ in batch]
            results: list[Any] = []
            await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
            timeout = connection.socket_timeout
            try:
                async with asyncio.timeout(None) as scope:
                    deadline = _Deadline(scope, timeout) if timeout else None
                    try:
                        for _ in batch:
                            try:
                                results.append(await connection.read_response(timeout=math.inf))
                            except ResponseError as error:  # an error reply: the next reply is still in line
                                results.append(error)
                    finally:
                        if deadline is not None:
                            deadline.cancel()
            except TimeoutError:
                await connection.disconnect(nowait=True)  # replies may still arrive: never reuse it
                raise RedisTimeoutError("Timeout reading from Redis") from None
            return results
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)

    async def _send_pipeline(self, batch: list[_Call]) -> list[Any]:
        """A cluster client's pipeline (each command to its node). The client has no retries (checked
        when this runner was made), so a batch is never resent; after a connection failure the client is
        reset instead (what its own retry does before resending), so the next batch reconnects and
        rediscovers the topology."""
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for name, keys, args, _ in batch:
                    pipe.execute_command("EVALSHA", lua_sha(name), len(keys), *keys, *args)
                results: list[Any] = await pipe.execute(raise_on_error=False)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            await self.client.aclose()
            raise
        return results


_runners: WeakKeyDictionary[Any, ScriptRunner] = WeakKeyDictionary()


def runner_for(client: Any, events: GatewayEvents | None = None) -> ScriptRunner:
    """The one runner of this client (shared by every component, so their calls batch together);
    ``events``, when given, is told of its round trips."""
    runner = _runners.get(client)
    if runner is None:
        runner = _runners[client] = ScriptRunner(client, events=events)
    elif events is not None and events is not NO_EVENTS:
        runner.events = events
    return runner


class _Script:
    __slots__ = ("name", "runner")

    def __init__(self, runner: ScriptRunner, name: str) -> None:
        self.runner = runner
        self.name = name

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self.runner.run(self.name, keys, args)


class ScriptSet:
    """The named scripts a component uses, bound to its current client."""

    def __init__(self, *names: str) -> None:
        for name in names:
            lua_sha(name)  # read and hash once, at construction
        self._names = names
        self._client: Any = None
        self._scripts: dict[str, _Script] = {}

    def bind(self, client: Any, events: GatewayEvents | None = None) -> dict[str, _Script]:
        """The scripts by name, each a callable ``script(keys=..., args=...)`` on ``client`` (bound
        again only when the client changes)."""
        if client is not self._client:
            runner = runner_for(client, events)
            self._scripts = {name: _Script(runner, name) for name in self._names}
            self._client = client
        return self._scripts


def shipped_scripts() -> list[str]:
    """The names of the scripts the package runs, sorted: every ``gateway/lua/*.lua`` but the libraries
    (files whose first line says ``-- Library:``), which only exist inside the scripts that include them
    and so are never loaded into Redis under their own name."""
    names = []
    for path in files("gateway").joinpath("lua").iterdir():
        if path.name.endswith(".lua") and not path.read_text(encoding="utf-8").startswith("-- Library:"):
            names.append(path.name.removesuffix(".lua"))
    return sorted(names)


async def scripts_loaded(client: Any, names: Sequence[str] | None = None) -> dict[str, bool]:
    """Whether Redis has each of the gateway's scripts cached (they load themselves on first use;
    for troubleshooting). ``names`` defaults to every script the package runs (``shipped_scripts``)."""
    if names is None:
        names = shipped_scripts()
    loaded = await client.script_exists(*[lua_sha(name) for name in names])
    return dict(zip(names, (bool(flag) for flag in loaded), strict=True))

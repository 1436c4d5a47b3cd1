"""Lua scripts shipped as package data, and how they are run: EVALSHA with a SCRIPT LOAD fallback on
NOSCRIPT (a restarted Redis has forgotten them), and *automatic pipelining*: the script calls that
concurrent requests make in the same event-loop turn go to Redis together, in one pipeline.

Each request still sends exactly one command per script call (and waits one round trip); what is
shared is the client-side cost of a command (connection checkout, write, timeout bookkeeping), which
in redis-py's asyncio client is several times the cost of the Redis work itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import math
import secrets
import time
from collections.abc import Callable, Sequence
from functools import cache
from importlib.resources import files
from typing import Any
from weakref import WeakKeyDictionary

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


@cache
def lua_source(name: str) -> str:
    """The text of ``gateway/lua/<name>.lua``, with each ``--!include other`` line replaced by the
    text of ``other.lua`` (shared Lua functions, so composed scripts stay one round trip)."""
    text = files("gateway").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    lines = [lua_source(line.split()[1]) if line.startswith("--!include ") else line for line in text.splitlines()]
    return "\n".join(lines) + "\n"


@cache
def lua_sha(name: str) -> str:
    return hashlib.sha1(lua_source(name).encode()).hexdigest()


_NONCE_PREFIX = secrets.token_hex(6)
_nonce_counter = itertools.count()


def nonce() -> str:
    """A value unique across processes (random prefix) and within one (a counter), for script
    arguments such as lease tokens; no system call per request, unlike ``secrets``."""
    return f"{_NONCE_PREFIX}{next(_nonce_counter):x}"


_Call = tuple[str, Sequence[Any], Sequence[Any], "asyncio.Future[Any]"]


class ScriptRunner:
    """Runs scripts on one client, batching the calls of one event-loop turn into one pipeline."""

    def __init__(self, client: Any, *, max_batch: int = 512) -> None:
        self.client = client
        self.max_batch = max_batch
        #: Called with (seconds, calls in the batch, succeeded) after each round trip, for metrics.
        self.on_round_trip: Callable[[float, int, bool], None] | None = None
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references to tasks

    async def run(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
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
                if hasattr(self.client, "connection_pool"):
                    results = await self._send_on_connection(batch)
                else:  # a cluster client: its pipeline routes each command to its node
                    results = await self._send_pipeline(batch)
            except Exception:
                if self.on_round_trip is not None:
                    self.on_round_trip(time.perf_counter() - started, len(batch), False)
                raise
            if self.on_round_trip is not None:
                self.on_round_trip(time.perf_counter() - started, len(batch), True)
            for (name, keys, args, future), result in zip(batch, results, strict=True):
                if isinstance(result, NoScriptError):  # a restarted Redis: load it, run it again
                    result = await self._evalsha(name, keys, args)
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        except BaseException as exc:  # every caller of the batch sees the failure (time-out, connection)
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise

    async def _send_on_connection(self, batch: list[_Call], *, retry: bool = True) -> list[Any]:
        """One write and one read timeout for the whole batch, on one pooled connection. (redis-py's
        pipeline sets up a timeout per reply, which costs more than the replies.)"""
        pool = self.client.connection_pool
        connection = await pool.get_connection()
        try:
            commands = [("EVALSHA", lua_sha(name), len(keys), *keys, *args) for name, keys, args, _ in batch]
            results: list[Any] = []
            try:
                await connection.send_packed_command(connection.pack_commands(commands), check_health=False)
                async with asyncio.timeout(connection.socket_timeout):
                    for _ in batch:
                        try:
                            results.append(await connection.read_response(timeout=math.inf))
                        except ResponseError as error:  # an error reply: the next reply is still in line
                            results.append(error)
            except RedisConnectionError:
                if results or not retry:
                    raise
                # Closed before a single reply: a pooled connection that a restarted Redis dropped.
                # Once more on a fresh one (as redis-py's own retry would).
                await connection.disconnect()
                return await self._send_on_connection(batch, retry=False)
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
        async with self.client.pipeline(transaction=False) as pipe:
            for name, keys, args, _ in batch:
                pipe.execute_command("EVALSHA", lua_sha(name), len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _evalsha(self, name: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        try:
            return await self.client.execute_command("EVALSHA", lua_sha(name), len(keys), *keys, *args)
        except NoScriptError:
            await self.client.script_load(lua_source(name))  # on a cluster: every primary
            return await self.client.execute_command("EVALSHA", lua_sha(name), len(keys), *keys, *args)


_runners: WeakKeyDictionary[Any, ScriptRunner] = WeakKeyDictionary()


def runner_for(client: Any) -> ScriptRunner:
    """The one runner of this client (shared by every component, so their calls batch together)."""
    runner = _runners.get(client)
    if runner is None:
        runner = _runners[client] = ScriptRunner(client)
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

    def bind(self, client: Any) -> dict[str, _Script]:
        if client is not self._client:
            runner = runner_for(client)
            self._scripts = {name: _Script(runner, name) for name in self._names}
            self._client = client
        return self._scripts

"""Contract tests for the code that relies on other libraries' internals (STYLE.md, house rule 14).

Each reach into internals is fenced in one place whose docstring names the range ``pyproject.toml``
pins; the tests here check what that place relies on, and when a release changes it they fail with a
message naming the library, the installed version and the pinned range. Then read that release's
changes, adapt the fence, and move the pin.

- ``service/protocol.py``, ``HttpProtocol``: uvicorn's ``HttpToolsProtocol`` and its request cycles;
- ``service/metrics.py``, ``_add_to_histogram``: prometheus-client's histogram ``_sum`` and ``_buckets``;
- ``service/db.py``, ``SQLitePool``: ``databases``' SQLite backend's ``_pool``;
- ``gateway/scripts.py``: redis-py's connection API (``tests/gateway/test_scripts.py::
  test_redis_py_contract``), and here what it skips of redis-py's own pipeline path.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from databases import Database
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.values import ValueClass
from redis.asyncio import Redis
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.scripts import lua_sha
from service.db import SQLitePool
from service.metrics import _add_to_histogram
from service.protocol import HttpProtocol, _GatheringTransport

ROOT = Path(__file__).resolve().parents[1]

#: Each library, and the fence in this repository that relies on its internals.
FENCES = {
    "uvicorn": "service/protocol.py (HttpProtocol)",
    "prometheus-client": "service/metrics.py (_add_to_histogram)",
    "databases": "service/db.py (SQLitePool)",
    "redis": "gateway/scripts.py (ScriptRunner), gateway/topology.py and service/cluster_client.py (AskingCluster)",
}


def pinned(distribution: str) -> str:
    """The version range ``pyproject.toml`` pins ``distribution`` to."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for line in itertools.chain(project["dependencies"], *project["optional-dependencies"].values()):
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == canonicalize_name(distribution) and requirement.specifier:
            return ",".join(sorted(map(str, requirement.specifier), key=lambda clause: clause[0] != ">"))
    raise AssertionError(f"pyproject.toml pins no range for {distribution}")


def broken(distribution: str, what: str) -> str:
    """The failure message: which release no longer does what, and where that is relied on."""
    return (
        f"{distribution} {version(distribution)} (pyproject.toml pins {pinned(distribution)}) changed what "
        f"{FENCES[distribution]} relies on: {what}. Adapt the fence and move the pin."
    )


@pytest.mark.parametrize("distribution", sorted(FENCES))
def test_every_fenced_library_is_pinned_to_a_range_and_installed_inside_it(distribution: str) -> None:
    specifier = SpecifierSet(pinned(distribution))
    assert any(s.operator in ("<", "<=", "==", "~=") for s in specifier), f"{distribution}: no upper bound"
    assert any(s.operator in (">", ">=", "==", "~=") for s in specifier), f"{distribution}: no lower bound"
    assert version(distribution) in specifier, (
        f"{distribution} {version(distribution)} is installed, outside the range pyproject.toml pins "
        f"({specifier}), which {FENCES[distribution]} was checked against"
    )


def test_every_fence_names_the_range_it_was_checked_against() -> None:
    for distribution, fence in (
        ("uvicorn", HttpProtocol), ("prometheus-client", _add_to_histogram), ("databases", SQLitePool),
    ):  # fmt: skip
        doc = " ".join((fence.__doc__ or "").split())
        for clause in pinned(distribution).split(","):
            assert clause in doc, f"{FENCES[distribution]}'s docstring does not name the pinned {clause}"


# uvicorn: service/protocol.py, HttpProtocol.


class _Socket(asyncio.Transport):
    """A connection's transport, in memory: what was written, whether reading is paused, whether closed."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.reading = True
        self.closed = False
        self.closed_after = 0  # writes made before the close

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.closed_after = len(self.writes)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def get_write_buffer_size(self) -> int:
        return 0

    def set_protocol(self, protocol: Any) -> None:
        pass


async def _ok(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def _protocol(cls: type[Any], app: Callable[..., Any]) -> Any:
    config = uvicorn.Config(app, lifespan="off", proxy_headers=False, log_level="warning")
    config.load()
    server_state = ServerState()
    server_state.default_headers = [(b"server", b"contract")]
    return cls(config, server_state, {}, asyncio.get_running_loop())


async def _until(condition: Callable[[], Any], what: str) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(broken("uvicorn", what))


@pytest.mark.anyio
async def test_uvicorn_cycles_write_to_the_transport_set_after_connection_made() -> None:
    """``HttpProtocol`` replaces ``self.transport`` after ``HttpToolsProtocol.connection_made``: each
    request's cycle must write to the replacement, and flow control must still reach the socket."""
    protocol = _protocol(HttpToolsProtocol, _ok)
    socket = _Socket()
    protocol.connection_made(socket)
    assert protocol.transport is socket, broken("uvicorn", "connection_made(transport) no longer sets self.transport")
    assert protocol.cycle is None, broken("uvicorn", "self.cycle is no longer None before the first request")
    protocol.transport = replaced = _Socket()
    protocol.flow.pause_reading()
    assert protocol.flow.read_paused is True and not socket.reading and replaced.reading, broken(
        "uvicorn", "self.flow (pause_reading, read_paused) is no longer bound to the transport connection_made got"
    )
    protocol.flow.resume_reading()
    assert protocol.flow.read_paused is False and socket.reading, broken("uvicorn", "flow.resume_reading changed")

    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert protocol.cycle.transport is replaced, broken(
        "uvicorn", "the request's cycle no longer gets self.transport as it is when the head completes"
    )
    await _until(lambda: protocol.cycle.response_complete, "cycle.response_complete is not set after a response")
    response = b"".join(replaced.writes)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\nok"), broken(
        "uvicorn", f"the cycle did not write its response to the replaced transport: {response!r}"
    )
    assert b"server: contract\r\n" in response, broken("uvicorn", "server_state.default_headers no longer sent")
    assert socket.writes == [], broken("uvicorn", "the cycle wrote to the transport connection_made got")


@pytest.mark.anyio
async def test_http_protocol_gathers_a_response_into_one_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same through ``service.protocol.HttpProtocol``: its gathering transport is the cycle's, and the
    socket sees the status line, headers and body as one write."""
    monkeypatch.setattr(HttpProtocol, "timeouts", (10.0, 10.0))
    protocol = _protocol(HttpProtocol, _ok)
    socket = _Socket()
    protocol.connection_made(socket)
    assert isinstance(protocol.transport, _GatheringTransport), broken(
        "uvicorn", "self.transport, replaced after HttpToolsProtocol.connection_made, is not the gathering one"
    )
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert protocol.cycle.transport is protocol.transport, broken("uvicorn", "the cycle bypasses self.transport")
    await _until(lambda: socket.writes, "nothing reached the socket")
    await asyncio.sleep(0.01)
    assert len(socket.writes) == 1 and socket.writes[0].endswith(b"\r\n\r\nok"), socket.writes
    protocol.connection_lost(None)


@pytest.mark.anyio
async def test_uvicorn_calls_the_parser_callbacks_http_protocol_overrides() -> None:
    for name in ("connection_made", "connection_lost", "data_received", "on_message_begin",
                 "on_headers_complete", "on_message_complete"):  # fmt: skip
        assert callable(getattr(HttpToolsProtocol, name, None)), broken("uvicorn", f"HttpToolsProtocol.{name} is gone")
    calls: list[str] = []
    upgrade: list[tuple[Any, Any]] = []

    class Recorder(HttpToolsProtocol):
        def on_message_begin(self) -> None:
            calls.append("begin")
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            before = self.cycle
            super().on_headers_complete()
            calls.append("headers")
            upgrade.append(("same cycle" if self.cycle is before else "new cycle", self.parser.should_upgrade()))

        def on_message_complete(self) -> None:
            calls.append("complete")
            super().on_message_complete()

        def handle_websocket_upgrade(self) -> None:
            calls.append("websocket")

    protocol = _protocol(Recorder, _ok)
    assert protocol.loop is asyncio.get_running_loop(), broken("uvicorn", "self.loop is not the protocol's loop")
    protocol.connection_made(_Socket())
    for piece in (b"POST / HTTP/1.1\r\nHo", b"st: x\r\nContent-Length: 3\r\n\r\n", b"a", b"bc"):
        protocol.data_received(piece)
    assert calls == ["begin", "headers", "complete"], broken("uvicorn", f"the parser callbacks called: {calls}")
    assert upgrade == [("new cycle", False)], broken("uvicorn", f"a plain request's cycle: {upgrade}")
    await _until(lambda: protocol.cycle.response_complete, "the response did not complete")

    calls.clear()
    upgrade.clear()
    protocol.data_received(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    assert upgrade == [("same cycle", True)], broken("uvicorn", f"a WebSocket head made a cycle: {upgrade}")
    # HttpProtocol's deadlines end with on_message_complete, which must come before the hand-over.
    assert calls == ["begin", "headers", "complete", "websocket"], broken(
        "uvicorn", f"a WebSocket head is no longer completed, then handed over: {calls}"
    )


@pytest.mark.anyio
async def test_uvicorn_cycle_state_the_read_deadlines_read_and_write() -> None:
    """What the deadlines read (``response_started``, ``response_complete``, ``waiting_for_100_continue``,
    ``pipeline``) and write (``keep_alive``; ``disconnected`` with ``message_event``)."""
    assert STATUS_LINE[408] == b"HTTP/1.1 408 Request Timeout\r\n", broken("uvicorn", "STATUS_LINE changed")
    received: list[dict[str, Any]] = []
    proceed = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())
        await proceed.wait()
        received.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    # A body that stops: the deadline marks the cycle disconnected and wakes the app.
    protocol = _protocol(HttpToolsProtocol, app)
    socket = _Socket()
    protocol.connection_made(socket)
    protocol.data_received(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
    cycle = protocol.cycle
    assert cycle.waiting_for_100_continue is True, broken("uvicorn", "waiting_for_100_continue is not set")
    await _until(lambda: socket.writes, "receive() did not answer Expect: 100-continue")
    assert cycle.waiting_for_100_continue is False, broken("uvicorn", "receive() leaves waiting_for_100_continue")
    assert socket.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"], broken("uvicorn", f"100 Continue: {socket.writes}")
    protocol.data_received(b"abc")
    await _until(lambda: received, "the app did not receive the body's first part")
    assert received == [{"type": "http.request", "body": b"abc", "more_body": True}]
    assert (cycle.response_started, cycle.response_complete, len(protocol.pipeline)) == (False, False, 0), broken(
        "uvicorn", "response_started, response_complete or pipeline changed"
    )
    cycle.disconnected = True
    cycle.message_event.set()
    proceed.set()
    await _until(lambda: len(received) == 2, "receive() did not return after message_event was set")
    assert received[1] == {"type": "http.disconnect"}, broken(
        "uvicorn", f"a disconnected cycle's receive(): {received}"
    )
    await asyncio.sleep(0.01)
    assert socket.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"], broken("uvicorn", "a disconnected cycle's sends wrote")

    # A pipelined request behind one being answered waits in self.pipeline, reading paused, and is
    # self.cycle; keep_alive = False on it closes the connection once it is answered.
    answered = asyncio.Event()

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await answered.wait()
        await _ok(scope, receive, send)

    protocol = _protocol(HttpToolsProtocol, slow)
    socket = _Socket()
    protocol.connection_made(socket)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert len(protocol.pipeline) == 1 and protocol.flow.read_paused, broken(
        "uvicorn", "a pipelined request no longer waits in self.pipeline with reading paused"
    )
    assert protocol.pipeline[0][0] is protocol.cycle, broken("uvicorn", "self.cycle is not the last request's")
    protocol.cycle.keep_alive = False
    answered.set()
    await _until(lambda: socket.closed, "keep_alive = False did not close the connection after the response")
    responses = b"".join(socket.writes[: socket.closed_after])
    assert responses.count(b"HTTP/1.1 200 OK") == 2 and responses.endswith(b"\r\n\r\nok"), broken(
        "uvicorn", f"keep_alive = False closed the connection before both responses were written: {responses!r}"
    )


# prometheus-client: service/metrics.py, _add_to_histogram.

#: Observations spread over the service's histograms' buckets, bounds themselves and +Inf included.
_SECONDS = (0.0001, 0.0002, 0.0003, 0.0007, 0.0007, 0.004, 0.02, 0.2, 0.25, 3.0)

_EXPOSE = """
import json, sys
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from service.metrics import _LATENCY_BUCKETS, _REDIS_BUCKETS, Metrics

seconds = json.loads(sys.argv[1])
metrics = Metrics()
for value in seconds:
    metrics.redis_round_trip(value, 1, True)
    metrics.observe_request("/listings/{id}", "GET", 200, value)
metrics.flush()
if sys.argv[2] == "reference":
    registry = CollectorRegistry()
    plain = Histogram("kapi_redis_round_trip_seconds", "", buckets=_REDIS_BUCKETS, registry=registry)
    labelled = Histogram("kapi_http_request_duration_seconds", "", ["route", "method"],
                         buckets=_LATENCY_BUCKETS, registry=registry)
    for value in seconds:
        plain.observe(value)
        labelled.labels("/listings/{id}", "GET").observe(value)
    sys.stdout.write(generate_latest(registry).decode())
else:
    sys.stdout.write(metrics.exposition().decode())
"""


def _histogram_samples(exposition: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name in ("kapi_redis_round_trip_seconds", "kapi_http_request_duration_seconds")
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_prometheus_histograms_keep_sum_and_buckets_as_observe_does() -> None:
    registry = CollectorRegistry()
    plain = Histogram("contract_plain_seconds", "", buckets=(0.1, 1.0), registry=registry)
    labelled = Histogram("contract_labelled_seconds", "", ["route"], buckets=(0.1, 1.0), registry=registry)
    for histogram in (plain, labelled.labels("/x")):
        assert isinstance(getattr(histogram, "_sum", None), ValueClass), broken(
            "prometheus-client", "a histogram (or labelled child) has no _sum value"
        )
        buckets = getattr(histogram, "_buckets", None)
        assert isinstance(buckets, list) and len(buckets) == 3, broken(
            "prometheus-client", "a histogram's _buckets is not a list of one value per bound, +Inf last"
        )
        assert all(isinstance(bucket, ValueClass) for bucket in buckets), broken(
            "prometheus-client", "a histogram's _buckets are not values"
        )
        histogram.observe(0.5)
        assert (histogram._sum.get(), [bucket.get() for bucket in buckets]) == (0.5, [0, 1, 0]), broken(
            "prometheus-client", "observe() no longer adds to _sum and to one, non-cumulative, bucket"
        )


def test_metrics_add_observations_as_prometheus_observe_would() -> None:
    """The service's histograms, fed through ``_add_to_histogram``, expose what ``observe()`` per value
    gives (bucket by bucket, sum and count), unlabelled and labelled."""
    result = {kind: _histogram_samples(_expose(kind, {})) for kind in ("metrics", "reference")}
    assert result["metrics"] and result["metrics"] == result["reference"], broken(
        "prometheus-client", f"what _sum/_buckets add up to differs from observe(): {result}"
    )


def test_metrics_add_observations_as_observe_would_in_multiprocess_mode(tmp_path: Path) -> None:
    metrics = _histogram_samples(_expose("metrics", {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}))
    reference = _histogram_samples(_expose("reference", {}))
    assert metrics and metrics == reference, broken(
        "prometheus-client", f"in multi-process mode, what _sum/_buckets add up to differs from observe(): {metrics}"
    )


def _expose(kind: str, env: dict[str, str]) -> str:
    """The exposition of a fresh process's service metrics (``metrics``) or of ``observe()`` (``reference``)
    after the same observations (prometheus-client chooses its value class when imported)."""
    environ = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    done = subprocess.run(
        [sys.executable, "-c", _EXPOSE, json.dumps(_SECONDS), kind], env={**environ, **env}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


# databases: service/db.py, SQLitePool.


@pytest.mark.anyio
async def test_databases_sqlite_backend_takes_its_pool_from_the_private_pool_attribute(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'contract.db'}")
    backend = getattr(database, "_backend", None)
    pool: Any = getattr(backend, "_pool", None)
    assert (type(pool).__module__, type(pool).__name__) == ("databases.backends.sqlite", "SQLitePool"), broken(
        "databases", f"the SQLite backend's _pool is {pool!r}, not a databases.backends.sqlite.SQLitePool"
    )
    assert inspect.iscoroutinefunction(pool.acquire) and inspect.iscoroutinefunction(pool.release), broken(
        "databases", "the SQLite pool's acquire()/release(connection) are not coroutines"
    )
    assert hasattr(pool, "_memref"), broken("databases", "the SQLite pool has no _memref")

    handed: list[tuple[str, Any]] = []

    class Recording(SQLitePool):
        async def acquire(self) -> Any:
            connection = await super().acquire()
            handed.append(("acquire", connection))
            return connection

        async def release(self, connection: Any) -> None:
            handed.append(("release", connection))
            await super().release(connection)

    installed = Recording.install(database)
    assert SQLitePool.of(database) is installed and installed._inner is pool
    pool._memref = memref = object()  # what a shared-cache in-memory database keeps
    await database.connect()
    try:
        assert await database.fetch_val("SELECT 41 + 1") == 42
        assert [step for step, _ in handed] == ["acquire", "release"], broken(
            "databases", f"a query no longer acquires and releases a connection from backend._pool: {handed}"
        )
        assert handed[0][1] is handed[1][1] and handed[0][1].in_transaction is False, broken(
            "databases", "the pool's connection is not an aiosqlite connection with in_transaction"
        )
        async with database.transaction():
            await database.execute("CREATE TABLE t (x INTEGER)")
        assert all(connection.in_transaction is False for step, connection in handed if step == "release")
        assert pool._memref is memref
    finally:
        await database.disconnect()
        await installed.close()
    assert pool._memref is None, broken("databases", "disconnect() no longer clears backend._pool._memref")


# redis-py: what gateway/scripts.py skips of its pipeline path.


@pytest.mark.anyio
async def test_redis_py_pipeline_prepares_nothing_for_script_calls(redis_server: Any) -> None:
    """``ScriptRunner._send_on_connection`` sends script batches without redis-py's pipeline path,
    skipping its ``pipeline_prepares`` (HIMPORT fieldsets the batch's ``HIMPORT SET``s need on the
    connection) and ``record_operation_duration`` (OpenTelemetry). Its comment argues why that is safe;
    this fails if either changes meaning."""
    try:
        from redis.asyncio import _himport_exec
        from redis.asyncio.observability import recorder
    except ImportError as exc:
        pytest.fail(broken("redis", f"a module the comment names is gone: {exc}"))
    assert inspect.iscoroutinefunction(getattr(recorder, "record_operation_duration", None)), broken(
        "redis", "redis.asyncio.observability.recorder.record_operation_duration is gone"
    )
    prepares = getattr(_himport_exec, "pipeline_prepares", None)
    assert inspect.iscoroutinefunction(prepares), broken(
        "redis", "redis.asyncio._himport_exec.pipeline_prepares is gone"
    )
    client = Redis.from_url(redis_server.url)
    try:
        connection_pool: Any = client.connection_pool
        connection = await connection_pool.get_connection()
        try:
            registry = connection.himport_registry
            registry.prepare("contract", ["a", "b"])
            script = ("EVALSHA", lua_sha("epoch_init"), 1, "contract:epoch")
            assert await prepares(client, connection, [script, ("PING",)]) == [], broken(
                "redis", "pipeline_prepares now has work for a batch of script calls"
            )
            wanted = await prepares(client, connection, [script, ("HIMPORT", "SET", "k", "contract", 1, 2)])
            assert [fieldset.name for fieldset in wanted] == ["contract"]  # it does find what it is for
            reconciled = connection._himport_reconciled_revision
            registry.discard("contract")
            assert connection._himport_reconciled_revision == reconciled != registry.revision, broken(
                "redis", "a dropped fieldset is no longer left for the connection's next reconcile"
            )  # what a batch sent here leaves for redis-py's next HIMPORT SET or pipeline on this connection
            assert await prepares(client, connection, [script]) == []  # nothing was prepared: nothing to discard
            assert connection._himport_reconciled_revision == registry.revision
        finally:
            await connection_pool.release(connection)
    finally:
        await client.aclose()


# redis-py: what service/cluster_client.py relies on in the cluster client's ASK branch.


def test_redis_py_cluster_names_an_ask_target_by_position_and_sends_asking_on_its_own() -> None:
    """``AskingCluster`` wraps the node only for a ``get_node`` call with two positional arguments,
    which in redis-py 8 is its ASK branch alone, and folds the ``ASKING`` it then sends into the next
    command. This fails if that branch, or any other caller's spelling, changes."""
    from redis.asyncio import cluster

    calls = re.findall(r"\.get_node\(([^)]*)\)", inspect.getsource(cluster))
    positional = sorted(args for args in calls if args.strip() and "=" not in args.split(",")[0])
    # The second is RedisCluster.get_node asking its nodes manager (three arguments: never wrapped).
    assert positional == ["*redirect_addr", "host, port, node_name"], broken(
        "redis", f"get_node is now called by position elsewhere, or not in the ASK branch: {positional}"
    )
    branch = inspect.getsource(cluster.RedisCluster._execute_command)
    ask = ("target_node = self.get_node(*redirect_addr)", 'await target_node.execute_command("ASKING")')
    assert all(line in branch for line in ask), broken(
        "redis", "the ASK branch no longer looks up its target by position and sends ASKING as a command of its own"
    )

"""The Procfile's HTTP protocol (``service.protocol:HttpProtocol``), seen from raw sockets against a
real uvicorn process: a response's writes gathered into one (pipelined requests answered in order,
``Connection: close`` answered whole before the close, a client that vanishes mid-request), and the
read deadlines on slow clients (``HTTP_HEADER_TIMEOUT``, ``HTTP_BODY_TIMEOUT``), under uvicorn and the
gunicorn worker, with other clients served meanwhile."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.testing import RedisServer, free_port
from service.protocol import HttpProtocol
from service.settings import Settings, SettingsError, http_timeouts
from tests.processes import ROOT, ServiceProcess, service_env

#: The services' HTTP_HEADER_TIMEOUT and HTTP_BODY_TIMEOUT here, seconds (10 by default).
DEADLINE = 1.0
#: How late past a deadline the close may come on a busy test machine.
SLACK = 1.5


def slow_service_env(redis_url: str, tmp: Path) -> dict[str, str]:
    return service_env(
        redis_url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}",
        http_header_timeout=DEADLINE, http_body_timeout=DEADLINE, rate_limit="100000/hour",
    )  # fmt: skip


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("protocol")
    with RedisServer() as redis, ServiceProcess(slow_service_env(redis.url, tmp), cwd=tmp) as process:
        yield process


def read_responses(sock: socket.socket, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """Parse the responses to requests of ``methods`` (Content-Length framed; no body for HEAD)."""
    sock.settimeout(5)
    data = b""
    responses: list[tuple[int, dict[str, str], bytes]] = []
    heads = iter(methods)
    while len(responses) < len(methods):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(responses)} responses"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
        length = 0 if next(heads) == "HEAD" else int(headers.get("content-length", "0"))
        while len(data) < length:
            chunk = sock.recv(65536)
            assert chunk, "connection closed inside a body"
            data += chunk
        responses.append((int(status_line.split()[1]), headers, data[:length]))
        data = data[length:]
    return responses


def test_the_procfile_runs_this_protocol() -> None:
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "--http service.protocol:HttpProtocol" in web


def test_pipelined_requests_are_answered_whole_and_in_order(service: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(
            b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        (s1, h1, b1), (s2, h2, b2), (s3, h3, b3), (s4, h4, b4) = read_responses(sock, ["GET", "HEAD", "GET", "GET"])
    assert (s1, s2, s3, s4) == (200, 200, 404, 200)
    assert len(b1) == int(h1["content-length"]) > 0
    assert b2 == b"" and h2["content-length"] == h1["content-length"]
    assert h3["content-type"] == "application/problem+json" and b"/nowhere" in b3
    assert len(b4) == int(h4["content-length"]) > 10_000 and b4.rstrip().endswith(b"}")  # a body bigger than a segment
    assert len({h1["x-request-id"], h2["x-request-id"], h3["x-request-id"], h4["x-request-id"]}) == 4


def test_connection_close_gets_the_whole_response_before_the_close(service: ServiceProcess) -> None:
    with socket.create_connection(("127.0.0.1", service.port)) as sock:
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(65536):  # until the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
    [length] = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
    assert len(body) == int(length)


def test_a_client_that_vanishes_mid_request_breaks_nothing(service: ServiceProcess) -> None:
    for _ in range(20):  # a reset right after the request: the response's write finds the socket gone
        sock = socket.create_connection(("127.0.0.1", service.port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.close()
    time.sleep(0.3)
    with httpx.Client(base_url=service.url) as client:
        assert [client.get("/health").status_code for _ in range(5)] == [200] * 5
    log = service.log.read_text()
    assert "Traceback" not in log and "Exception in callback" not in log


# Read deadlines on slow clients.

HEAD = b"GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: slowloris\r\n\r\n"
BODY = b'{"value": "a slow but steady upload"}'


def upload_head(length: int = len(BODY), *, close: bool = False) -> bytes:
    return (
        b"POST /test-cache HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + (b"Connection: close\r\n" if close else b"")
        + b"Content-Length: "
        + str(length).encode()
        + b"\r\n\r\n"
    )


def dribble(port: int, data: bytes, *, every: float, first: bytes = b"", limit: float = 8.0) -> tuple[float, bytes]:
    """Connect, send ``first`` at once, then ``data`` one byte every ``every`` seconds, then nothing;
    return the seconds from the connect until the server closed the connection (``limit`` if it
    did not) and everything it sent. What the server sends is read as soon as it comes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        start = time.monotonic()
        sock.sendall(first)
        received = b""
        pending = list(data)
        next_send = start + every
        while (now := time.monotonic()) < start + limit:
            wake = min(next_send, start + limit) if pending else start + limit
            if select.select([sock], [], [], max(0.0, wake - now))[0]:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    return time.monotonic() - start, received
                received += chunk
            elif pending and time.monotonic() >= next_send:
                sock.send(bytes([pending.pop(0)]))
                next_send += every
        return limit, received


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


def assert_closed_at(closed_after: float, expected: float) -> None:
    # A timer may fire a hair early (the event loop's clock resolution), and late on a busy machine.
    assert expected - 0.05 <= closed_after < expected + SLACK, f"closed after {closed_after:.2f} s, expected {expected}"


def assert_timed_out(response: bytes, deadline: str) -> None:
    """One ``408`` problem naming the deadline, with ``Connection: close``, and nothing after it."""
    status, headers, body = parse(response)
    assert status == 408, response
    assert headers["content-type"] == "application/problem+json" and headers["connection"] == "close"
    assert len(body) == int(headers["content-length"])
    problem = json.loads(body)
    assert problem["status"] == 408 and problem["title"] == "Request Timeout" and deadline in problem["detail"]


def test_a_head_sent_a_byte_at_a_time_gets_408_when_the_header_deadline_passes(service: ServiceProcess) -> None:
    # Every pause (0.3 s) is well inside the deadline: it is the whole head that is late.
    closed_after, response = dribble(service.port, HEAD, every=0.3)
    assert_closed_at(closed_after, DEADLINE)
    assert_timed_out(response, "HTTP_HEADER_TIMEOUT")


def test_a_kept_alive_connection_is_held_to_the_header_deadline_for_its_next_request(service: ServiceProcess) -> None:
    # After a first response: the next head sent slowly, or only stray CRLFs (each byte cancels uvicorn's
    # keep-alive timeout, which used to leave no timer at all); the clock starts with the first byte.
    for dribbled in (HEAD, b"\r\n" * 20):
        closed_after, response = dribble(
            service.port, dribbled, every=0.3, first=b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first, _, rest = response.partition(b"\r\n\r\n")
        assert first.startswith(b"HTTP/1.1 200")
        assert_closed_at(closed_after, 0.3 + DEADLINE)
        assert_timed_out(rest[rest.index(b"HTTP/1.1 ") :], "HTTP_HEADER_TIMEOUT")


def test_a_connection_that_sends_nothing_is_closed_without_a_response(service: ServiceProcess) -> None:
    closed_after, response = dribble(service.port, b"", every=1)
    assert_closed_at(closed_after, DEADLINE)
    assert response == b""  # no request, nothing to answer


def test_a_body_that_stops_gets_408_when_the_body_deadline_passes(service: ServiceProcess) -> None:
    closed_after, response = dribble(service.port, b"", every=1, first=upload_head(100) + b'{"value": ')
    assert_closed_at(closed_after, DEADLINE)
    assert_timed_out(response, "HTTP_BODY_TIMEOUT")
    log = service.log.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log  # a disconnect to the app


def test_the_body_deadline_is_for_a_pause_not_the_whole_body(service: ServiceProcess) -> None:
    # Twelve bytes at 0.3 s take 3.6 s, far past the deadline, and are not cut off; then the client stops,
    # and the connection is closed one deadline after its last byte.
    closed_after, response = dribble(service.port, BODY[:12], every=0.3, first=upload_head(100))
    last_byte = 12 * 0.3
    assert_closed_at(closed_after, last_byte + DEADLINE)
    assert_timed_out(response, "HTTP_BODY_TIMEOUT")


def test_slow_clients_are_closed_while_everyone_else_is_served(service: ServiceProcess) -> None:
    # 20 slow heads and 20 stalled bodies at once, and one slow but steady upload that must get its answer;
    # meanwhile /health keeps answering at once.
    with ThreadPoolExecutor(max_workers=41) as pool:
        heads = [pool.submit(dribble, service.port, HEAD, every=0.3) for _ in range(20)]
        bodies = [pool.submit(dribble, service.port, b"", every=1, first=upload_head(100) + b"{") for _ in range(20)]
        steady = pool.submit(dribble, service.port, BODY, every=0.1, first=upload_head(close=True), limit=10)
        latencies = []
        with httpx.Client(base_url=service.url) as client:
            while not all(future.done() for future in heads + bodies):
                started = time.monotonic()
                assert client.get("/health").status_code == 200
                latencies.append(time.monotonic() - started)
                time.sleep(0.05)
        for future in heads + bodies:
            closed_after, response = future.result()
            assert_closed_at(closed_after, DEADLINE)
            assert parse(response)[0] == 408
        took, response = steady.result()
    status, _, body = parse(response)
    assert status == 201 and json.loads(body)["value"] == "a slow but steady upload"
    assert took >= len(BODY) * 0.1  # 3.7 s, never a pause of a whole second
    assert len(latencies) >= 10 and max(latencies) < 0.5


def test_the_deadlines_hold_under_the_gunicorn_worker(tmp_path: Path) -> None:
    with (
        RedisServer() as redis,
        ServiceProcess(slow_service_env(redis.url, tmp_path), cwd=tmp_path, gunicorn=True) as gunicorn,
    ):
        with ThreadPoolExecutor(max_workers=2) as pool:
            head = pool.submit(dribble, gunicorn.port, HEAD, every=0.3)
            body = pool.submit(dribble, gunicorn.port, b"", every=1, first=upload_head(100) + b"{")
            with httpx.Client(base_url=gunicorn.url) as client:
                assert client.get("/health").status_code == 200
            for future, deadline in ((head, "HTTP_HEADER_TIMEOUT"), (body, "HTTP_BODY_TIMEOUT")):
                closed_after, response = future.result()
                assert_closed_at(closed_after, DEADLINE)
                assert_timed_out(response, deadline)
        assert "Traceback" not in gunicorn.log.read_text()


# The protocol on its own, in-process, around a tiny app.


@contextmanager
def protocol_server(app: Any, monkeypatch: pytest.MonkeyPatch, timeouts: tuple[float, float]) -> Iterator[int]:
    """uvicorn with ``HttpProtocol`` and these deadlines, serving ``app`` from a thread; yields the port."""
    monkeypatch.setattr(HttpProtocol, "timeouts", timeouts)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, http=HttpProtocol, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_to_the_app_a_body_deadline_is_a_disconnect(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    received: list[dict[str, Any]] = []
    sent = threading.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "http.disconnect":
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})  # dropped: the client is gone
        await send({"type": "http.response.body", "body": b"late"})
        sent.set()

    with protocol_server(app, monkeypatch, (5.0, 0.5)) as port:
        closed_after, response = dribble(port, b"", every=1, first=upload_head(10) + b"abc")
        assert sent.wait(5)
    assert_closed_at(closed_after, 0.5)
    assert_timed_out(response, "HTTP_BODY_TIMEOUT")
    assert b"late" not in response
    assert received == [{"type": "http.request", "body": b"abc", "more_body": True}, {"type": "http.disconnect"}]
    assert not [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")]


def test_a_slow_pipelined_head_lets_the_response_ahead_of_it_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(1.0)  # longer than the header deadline
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    with protocol_server(app, monkeypatch, (0.3, 5.0)) as port:
        # A whole request, then the start of the next one, never finished.
        closed_after, response = dribble(port, b"", every=1, first=b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HT")
    assert_closed_at(closed_after, 1.0)  # after the answer, not before it
    status, _, body = parse(response)
    assert (status, body) == (200, b"ok") and b"408" not in response


def test_waiting_for_100_continue_is_not_a_pause_of_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(1.0)  # the server asks for the body late: the client rightly waits for it
        body = b""
        while (message := await receive())["type"] == "http.request":
            body += message["body"]
            if not message["more_body"]:
                break
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    with protocol_server(app, monkeypatch, (5.0, 0.3)) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(65536).startswith(b"HTTP/1.1 100")
        sock.sendall(b"hello")
        assert read_responses(sock, ["POST"])[0][2] == b"hello"


def test_a_body_the_server_is_not_reading_is_not_a_pause_of_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await asyncio.sleep(1.0)  # meanwhile uvicorn has stopped reading the body (flow control)
        length = 0
        while (message := await receive())["type"] == "http.request":
            length += len(message["body"])
            if not message["more_body"]:
                break
        answer = str(length).encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(answer))]}
        )
        await send({"type": "http.response.body", "body": answer})

    size = 4 * 1024 * 1024  # far more than uvicorn buffers before it stops reading, and than the socket holds
    with protocol_server(app, monkeypatch, (5.0, 0.3)) as port, socket.create_connection(("127.0.0.1", port)) as sock:
        sender = threading.Thread(target=sock.sendall, args=(upload_head(size) + b"x" * size,))
        sender.start()
        try:
            assert read_responses(sock, ["POST"])[0][2] == str(size).encode()
        finally:
            sender.join(timeout=10)


# The two settings.


def test_the_deadlines_default_to_ten_seconds() -> None:
    settings = Settings.from_environ({"JWT_SECRET": "x" * 40}, env_file=None)
    assert (settings.http_header_timeout, settings.http_body_timeout) == (10.0, 10.0)
    assert http_timeouts({}, env_file=None) == (10.0, 10.0)
    assert http_timeouts({"HTTP_HEADER_TIMEOUT": "2.5", "HTTP_BODY_TIMEOUT": "30"}, env_file=None) == (2.5, 30.0)


@pytest.mark.parametrize("name", ["HTTP_HEADER_TIMEOUT", "HTTP_BODY_TIMEOUT"])
@pytest.mark.parametrize("value", ["abc", "0", "-1", "nan", "inf", "3601"])
def test_a_bad_deadline_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}="):
        Settings.from_environ({name: value, "JWT_SECRET": "x" * 40}, env_file=None)
    with pytest.raises(SettingsError, match=f"^{name}="):
        http_timeouts({name: value}, env_file=None)


def test_start_up_with_a_bad_deadline_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "HTTP_HEADER_TIMEOUT": "abc", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", "1", "--http", "service.protocol:HttpProtocol"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["kapi: configuration error: HTTP_HEADER_TIMEOUT='abc' is invalid: expected seconds, e.g. 10"]
    assert "Traceback" not in result.stderr + result.stdout


def test_under_gunicorn_a_bad_deadline_stops_start_up(tmp_path: Path) -> None:
    # Not a worker booted again and again, each printing the line: gunicorn halts (its "App failed to load").
    env = {**os.environ, "HTTP_BODY_TIMEOUT": "0", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "gunicorn", "service.main:app", "-k", "service.worker.UvicornWorker",
               "-w", "1", "-b", f"127.0.0.1:{free_port()}"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:  # still serving: stop the master and its workers
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 4  # gunicorn's APP_LOAD_ERROR
    errors = [line for line in stderr.splitlines() if line.startswith("kapi: ")]
    assert errors == [
        "kapi: configuration error: HTTP_BODY_TIMEOUT='0' is invalid: expected seconds above 0, at most 3600"
    ]
    assert "Traceback" not in stderr + stdout


def test_a_websocket_is_not_held_to_the_http_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """After the upgrade the connection is the WebSocket protocol's: idle longer than both deadlines, a
    request after a finished one on the same connection included, it stays open and answers."""
    from websockets.sync.client import connect

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
            await send({"type": "http.response.body", "body": b"ok"})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})

    with protocol_server(app, monkeypatch, (0.3, 0.3)) as port, connect(f"ws://127.0.0.1:{port}/ws") as ws:
        time.sleep(1.0)  # past both deadlines (and the deadline check's re-arming)
        ws.send("still here")
        assert ws.recv(timeout=5) == "STILL HERE"

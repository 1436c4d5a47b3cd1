"""The Procfile's HTTP protocol (``service.protocol:HttpProtocol``): a response's writes gathered into
one, seen from a raw socket against a real uvicorn process: pipelined requests answered in order,
``Connection: close`` answered whole before the close, a client that vanishes mid-request."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest

from gateway.testing import RedisServer
from tests.processes import ROOT, ServiceProcess, service_env


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    tmp = tmp_path_factory.mktemp("protocol")
    with RedisServer() as redis:
        env = service_env(redis.url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}")
        with ServiceProcess(env, cwd=tmp) as process:
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

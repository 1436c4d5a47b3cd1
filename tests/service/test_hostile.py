"""Hostile input against a real service process, and what production mode keeps out of the logs."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import httpx
import pytest

from gateway.testing import RedisServer
from service.app import create_app
from service.otp_sender import LogOtpSender, mask
from tests.conftest import CODE_A, PHONE_A, bearer, http_client, make_settings
from tests.processes import ServiceProcess, service_env


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> ServiceProcess:
    tmp = Path(tmp_path_factory.mktemp("hostile"))
    with RedisServer() as redis_server:
        env = service_env(redis_server.url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}", rate_limit="100000/hour")
        with ServiceProcess(env, cwd=tmp) as process:
            yield process


def test_oversize_headers_are_refused_cleanly(service: ServiceProcess) -> None:
    huge = b"X-Junk: " + b"a" * 200_000 + b"\r\n"
    answer = raw_request(service.port, b"GET /listings HTTP/1.1\r\nHost: t\r\n" + huge + b"\r\n")
    status_line = answer.split(b"\r\n", 1)[0]
    assert status_line in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request"), status_line
    assert httpx.get(f"{service.url}/health").status_code == 200  # and the server is fine


def test_oversize_bodies_are_413_even_when_streamed(service: ServiceProcess) -> None:
    declared = httpx.post(f"{service.url}/listings", content=b"x" * 70_000)
    assert declared.status_code == 413  # before authentication even looks at it

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(70):
            yield b"x" * 1000

    streamed = httpx.post(f"{service.url}/test-cache", content=chunks())
    assert streamed.status_code == 413
    assert streamed.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "header",
    [
        b"Authorization: Bearer \xff\xfe\r\n",
        b"Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        b"Authorization: " + b"A" * 10_000 + b"\r\n",
        b"Authorization: Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.\r\n",
    ],
)
def test_hostile_authorization_headers_are_401_never_500(service: ServiceProcess, header: bytes) -> None:
    answer = raw_request(
        service.port, b"GET /auth/session HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + header + b"\r\n"
    )
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 401 Unauthorized"


@pytest.mark.anyio
async def test_production_logs_carry_no_codes_tokens_or_secrets(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "production-secret-" + "s" * 30
    settings = make_settings(redis_server.url, tmp_path, env="production", jwt_secret=secret)
    caplog.set_level(logging.DEBUG)
    sent: list[str] = []

    class RecordingSender(LogOtpSender):
        """The production sender, which also tells the test the code it "sent"."""

        async def send(self, phone: str, code: str) -> None:
            sent.append(code)
            await super().send(phone, code)

    app = create_app(settings, otp_sender=RecordingSender(reveal_code=False))
    async with app.router.lifespan_context(app), http_client(app) as client:
        await client.post("/auth/otp", json={"phone": "+905551234567"})  # a real number: a code is "sent"
        await client.post("/auth/otp", json={"phone": PHONE_A})
        tokens = (await client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A})).json()
        await client.get("/auth/session", headers=bearer(tokens))
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        await client.post("/auth/logout", headers=bearer(tokens))
        await client.get("/auth/session", headers=bearer(tokens))
        await asyncio.sleep(0)
    text = caplog.text
    assert f"one-time code sent to {mask('+905551234567')}" in text  # the event is logged, masked
    assert len(sent) == 1 and len(sent[0]) == 6  # the code generated for the real number...
    for needle in (sent[0], secret, tokens["access_token"], tokens["refresh_token"], CODE_A, "Bearer "):
        assert needle not in text  # ...never reaches a log line, nor do tokens and secrets


def test_many_headers_are_refused_cleanly(service: ServiceProcess) -> None:
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
    answer = raw_request(service.port, b"GET /listings HTTP/1.1\r\nHost: t\r\nConnection: close\r\n" + many + b"\r\n")
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 431 Request Header Fields Too Large"


@pytest.mark.parametrize(
    ("target", "location"),
    [
        ("/listings/1/", "/listings/1"),
        ("/listings/1/?x=%2E&y=1", "/listings/1?x=%2E&y=1"),
        ("/auth/session/", "/auth/session"),
        ("/listings/%C5%9F/", "/listings/%C5%9F"),
    ],
)
def test_the_slash_redirect_never_names_the_host_a_client_sent(
    service: ServiceProcess, target: str, location: str
) -> None:
    """Behind a cache that does not key on Host, a Location built from it would be cache poisoning."""
    response = httpx.get(f"{service.url}{target}", headers={"Host": "evil.example"})
    assert response.status_code == 307
    assert response.headers["location"] == location
    assert "evil.example" not in response.text


def test_no_slash_redirect_to_another_host_or_a_path_nothing_serves(service: ServiceProcess) -> None:
    for target in ("//evil.example/", "/nowhere/", "/"):
        response = httpx.get(f"{service.url}{target}", headers={"Host": "evil.example"})
        assert response.status_code == 404 and "location" not in response.headers, target

"""Redis Sentinel (a failover the service survives without restart), TLS, and password/ACL auth."""

from __future__ import annotations

import asyncio
import datetime
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.testing import RedisServer, free_port
from service.app import create_app
from tests.conftest import bearer, http_client, login, make_settings
from tests.sentinel import command, sentinel_setup, wait_for

pytestmark = pytest.mark.anyio


@pytest.fixture
def sentinel(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    with sentinel_setup(tmp_path) as running:
        yield running


async def test_sentinel_failover_without_restart(
    sentinel: tuple[RedisServer, RedisServer, int], tmp_path: Path
) -> None:
    _, replica, sentinel_port = sentinel
    settings = make_settings(
        "", tmp_path, redis_mode="sentinel", redis_sentinels=f"127.0.0.1:{sentinel_port}",
        redis_sentinel_master="mymaster",
    )  # fmt: skip
    app = create_app(settings)
    async with app.router.lifespan_context(app), http_client(app) as client:
        headers = bearer(await login(client))
        listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"},
                                     headers=headers)).json()  # fmt: skip
        assert (await client.get("/test-redis")).status_code == 200

        assert b"OK" in command(sentinel_port, "SENTINEL", "FAILOVER", "mymaster")
        wait_for(lambda: str(replica.port).encode()
                 in command(sentinel_port, "SENTINEL", "get-master-addr-by-name", "mymaster"))  # fmt: skip

        deadline = time.monotonic() + 20
        while True:  # the same process, no restart: it finds the new master by itself
            session = await client.get("/auth/session", headers=headers)
            if session.status_code == 200:
                break
            assert time.monotonic() < deadline, session.text
            await asyncio.sleep(0.2)
        patched = await client.patch(f"/listings/{listing['id']}", json={"price": "3"}, headers=headers)
        assert patched.status_code == 200
        info = (await client.get("/test-redis")).json()
        assert info["status"] == "ok"
        assert b"role:master" in command(replica.port, "INFO", "replication")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = directory / "redis.crt", directory / "redis.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))  # fmt: skip
    return cert_file, key_file


async def test_tls_with_rediss_url(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls_port = free_port()
    server = RedisServer(extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    ]).start()  # fmt: skip
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
        app = create_app(make_settings(url, tmp_path))
        async with app.router.lifespan_context(app), http_client(app) as client:
            assert (await client.get("/test-redis")).json()["status"] == "ok"
            headers = bearer(await login(client))
            assert (await client.get("/auth/session", headers=headers)).status_code == 200
        untrusted = create_app(make_settings(f"rediss://127.0.0.1:{tls_port}/0?ssl_cert_reqs=required", tmp_path))
        async with untrusted.router.lifespan_context(untrusted), http_client(untrusted) as client:
            assert (await client.get("/test-redis")).status_code == 503  # an unverified server is refused
    finally:
        server.close()


async def test_password_and_acl_user(tmp_path: Path) -> None:
    server = RedisServer(extra_args=["--requirepass", "s3cret-pass"]).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"AUTH s3cret-pass\r\nACL SETUSER kapi on >kapi-pass ~* &* +@all\r\n")
            await asyncio.sleep(0.1)
            assert sock.recv(100).count(b"+OK") == 2
        for extra in ({"redis_password": "s3cret-pass"}, {"redis_username": "kapi", "redis_password": "kapi-pass"}):
            app = create_app(make_settings(server.url, tmp_path, **extra))
            async with app.router.lifespan_context(app), http_client(app) as client:
                assert (await client.get("/ready")).status_code == 200
                assert (await client.get("/auth/session", headers=bearer(await login(client)))).status_code == 200
        wrong = create_app(make_settings(server.url, tmp_path, redis_password="wrong"))
        async with wrong.router.lifespan_context(wrong), http_client(wrong) as client:
            ready = await client.get("/ready")
            assert ready.status_code == 503 and "wrong" not in ready.text
    finally:
        server.close()


_ = httpx

"""The near cache's tracking connection is held to the client's own security: the same TLS checks
(a certificate naming another host is refused by both, unless the client itself turned hostname
checking off) and the same credentials (a credential provider's ACL user, asked at every connect).
Real TLS redis-servers, with a throwaway CA made for the test run."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from redis.asyncio import Redis
from redis.credentials import CredentialProvider
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import NearCache
from gateway.testing import RedisServer, free_port
from tests.gateway.test_nearcache import item_cache, until

pytestmark = pytest.mark.anyio


@dataclass(frozen=True)
class Pki:
    ca: Path
    localhost: tuple[Path, Path]  # certificate and key naming localhost and 127.0.0.1
    other: tuple[Path, Path]  # naming other.example only


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Kapi test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def server_certificate(stem: str, names: list[x509.GeneralName]) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
        certificate = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
        cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_pem_key(key))
        return cert_file, key_file

    localhost = server_certificate(
        "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    return Pki(directory / "ca.crt", localhost, server_certificate("other.example", [x509.DNSName("other.example")]))


@dataclass(frozen=True)
class TlsServer:
    server: RedisServer  # its plain port is for the test's own checks
    tls_port: int


def tls_server(pki: Pki, certificate: tuple[Path, Path]) -> Iterator[TlsServer]:
    tls_port = free_port()
    cert, key = certificate
    with RedisServer(extra_args=[
        "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(pki.ca), "--tls-auth-clients", "no",
    ]) as server:  # fmt: skip
        yield TlsServer(server, tls_port)


@pytest.fixture(scope="module")
def named_as_dialled(pki: Pki) -> Iterator[TlsServer]:
    yield from tls_server(pki, pki.localhost)


@pytest.fixture(scope="module")
def named_otherwise(pki: Pki) -> Iterator[TlsServer]:
    yield from tls_server(pki, pki.other)


async def tracking_users(admin: Redis) -> list[str]:
    return [c["user"] for c in await admin.client_list() if c["name"] == "kapi-near-cache"]


async def assert_near_cache_works(redis: Redis, near: NearCache, writer: Redis, item: int) -> None:
    """Tracking is up: a read is kept locally, and a write elsewhere drops it."""
    await near.start(wait=3)
    assert near.active
    load = item_cache(redis, near, [])
    assert [(await load.read_json(item))[1] for _ in range(3)] == ["loader", "redis", "local"]
    await writer.set(f"item:{item}", b'{"written":"elsewhere"}')
    assert await load.read_json(item) == (b'{"written":"elsewhere"}', "redis")


@pytest.mark.parametrize("trust", ["ssl_ca_certs", "ssl_ca_data"])
async def test_a_server_named_as_dialled_is_trusted_by_both(named_as_dialled: TlsServer, pki: Pki, trust: str) -> None:
    ca: dict[str, Any] = {trust: str(pki.ca) if trust == "ssl_ca_certs" else pki.ca.read_text()}
    redis = Redis(host="127.0.0.1", port=named_as_dialled.tls_port, ssl=True, **ca)
    writer = Redis.from_url(named_as_dialled.server.url)
    near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
    try:
        await writer.delete("item:1")
        await assert_near_cache_works(redis, near, writer, 1)
    finally:
        await near.aclose()
        await redis.aclose()
        await writer.aclose()


async def test_a_certificate_naming_another_host_is_refused_by_both(
    named_otherwise: TlsServer, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    # The CA is trusted; only the name is wrong. redis-py checks the host name by default.
    redis = Redis.from_url(f"rediss://127.0.0.1:{named_otherwise.tls_port}/0?ssl_ca_certs={pki.ca}")
    admin = Redis.from_url(named_otherwise.server.url)
    near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
    try:
        with pytest.raises(RedisConnectionError, match="mismatch"):
            await redis.ping()
        await near.start(wait=0.5)
        assert not near.active
        assert near.put("item:2", b"x", near.mark()) is False and near.get("item:2") is None  # bypassed
        assert "tracking not established" in caplog.text and "mismatch" in caplog.text
        assert await tracking_users(admin) == []  # the server never saw it get as far as HELLO
    finally:
        await near.aclose()
        await redis.aclose()
        await admin.aclose()


async def test_hostname_checking_turned_off_by_the_client_is_off_for_both(named_otherwise: TlsServer, pki: Pki) -> None:
    redis = Redis(host="127.0.0.1", port=named_otherwise.tls_port, ssl=True, ssl_ca_certs=str(pki.ca),
                  ssl_check_hostname=False)  # fmt: skip
    writer = Redis.from_url(named_otherwise.server.url)
    near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
    try:
        await writer.delete("item:3")
        assert await redis.ping()
        await assert_near_cache_works(redis, near, writer, 3)
    finally:
        await near.aclose()
        await redis.aclose()
        await writer.aclose()


class RotatingCredentials(CredentialProvider):
    """An ACL user whose password the test changes, as a secrets manager would."""

    def __init__(self, username: str, password: str) -> None:
        self.username, self.password = username, password
        self.asked = 0

    def get_credentials(self) -> tuple[str, str]:
        self.asked += 1
        return self.username, self.password

    async def get_credentials_async(self) -> tuple[str, str]:
        return self.get_credentials()


async def test_an_acl_user_from_a_credential_provider_is_used_by_both() -> None:
    with RedisServer(extra_args=["--requirepass", "admin-pw"]) as server:
        admin = Redis.from_url(server.url, password="admin-pw")
        await admin.acl_setuser("tracker", enabled=True, passwords=["+first-pw"], keys=["item:*"],
                                categories=["+@all"])  # fmt: skip
        credentials = RotatingCredentials("tracker", "first-pw")
        redis = Redis(host="127.0.0.1", port=server.port, credential_provider=credentials)
        near = NearCache(redis=redis, prefixes=["item:"], ping_interval=0.2)
        try:
            await assert_near_cache_works(redis, near, admin, 4)
            assert await tracking_users(admin) == ["tracker"]
            # The password rotates; a new tracking connection asks the provider again.
            await admin.acl_setuser("tracker", enabled=True, reset_passwords=True, passwords=["+second-pw"],
                                    keys=["item:*"], categories=["+@all"])  # fmt: skip
            credentials.password = "second-pw"
            asked = credentials.asked
            await admin.client_kill_filter(user="tracker")  # the channel and the client's connections
            await until(lambda: near.counts["resets"] == 1 and near.active)
            assert credentials.asked > asked and await tracking_users(admin) == ["tracker"]
            await redis.set("item:4", b'{"after":"rotation"}')
            load = item_cache(redis, near, [])
            await load.read_json(4)
            assert await load.read_json(4) == (b'{"after":"rotation"}', "local")
        finally:
            await near.aclose()
            await redis.aclose()
            await admin.aclose()


def test_redis_py_contract_of_the_tracking_connection() -> None:
    """What gateway/nearcache.py's ``_endpoint`` reads from redis-py (redis>=8,<9), stated once."""

    def connection(*args: Any, **kwargs: Any) -> Any:
        pool = (Redis.from_url(*args, **kwargs) if args else Redis(**kwargs)).connection_pool
        return pool.connection_class(**pool.connection_kwargs)

    secure = connection("rediss://example.test:6380/0")
    assert (secure.host, secure.port) == ("example.test", 6380)
    context = secure.ssl_context.get()
    assert isinstance(context, ssl.SSLContext) and context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    assert not connection("rediss://example.test/0?ssl_check_hostname=false").ssl_context.get().check_hostname
    assert connection("rediss://example.test/0?ssl_cert_reqs=none").ssl_context.get().verify_mode == ssl.CERT_NONE
    plain = connection("redis://user:pw@example.test/0")
    assert (plain.username, plain.password, plain.credential_provider) == ("user", "pw", None)
    provider = RotatingCredentials("u", "p")
    assert connection(credential_provider=provider).credential_provider is provider
    assert connection("unix:///tmp/redis.sock").path == "/tmp/redis.sock"

"""``KeySet``: the keys tokens are signed and verified with, each named by a ``kid`` derived from the
key itself, so every instance and every restart agree on it without configuration.

- HMAC (``HS*``): the ``kid`` is a truncated HMAC-SHA256 of a fixed label under the secret: it names
  the secret without revealing anything about it.
- RSA and EC (``RS*``, ``ES*``): the ``kid`` is the RFC 7638 thumbprint of the public key.

Rotating our own keys: make the new key current and keep the old one among the ``previous`` keys
until the longest token signed with it has expired. A token names its key by ``kid``; an unknown
``kid`` is refused; a token without one (minted elsewhere with the shared secret) is verified with
the current key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from gateway.claims import HMAC_ALGORITHMS, InvalidToken

_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.S)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def split_keys(text: str) -> list[str]:
    """Keys written in one setting: PEM blocks, or comma-separated secrets."""
    if "-----BEGIN" in text:
        return _PEM.findall(text)
    return [item.strip() for item in text.split(",") if item.strip()]


class Key(NamedTuple):
    """One key: its ``kid``, what signs with it (the secret, or the PEM private key; None for a
    verification-only public key) and what verifies with it."""

    kid: str
    signing: str | None
    verifying: Any


def hmac_kid(secret: str) -> str:
    return _b64(hmac.new(secret.encode(), b"kapi key id", hashlib.sha256).digest()[:12])


def _load_pem(pem: str) -> tuple[Any, bool]:
    from cryptography.hazmat.primitives import serialization

    data = pem.encode()
    if b"PRIVATE KEY" in data:
        return serialization.load_pem_private_key(data, password=None), True
    return serialization.load_pem_public_key(data), False


def public_jwk(public_key: Any) -> dict[str, str]:
    """The public JWK of an RSA or EC key (the members RFC 7638 hashes)."""
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def number(value: int, size: int | None = None) -> str:
        length = size or (value.bit_length() + 7) // 8
        return _b64(value.to_bytes(length, "big"))

    if isinstance(public_key, rsa.RSAPublicKey):
        numbers = public_key.public_numbers()
        return {"e": number(numbers.e), "kty": "RSA", "n": number(numbers.n)}
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curves = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
        size = (public_key.curve.key_size + 7) // 8
        point = public_key.public_numbers()
        x, y = number(point.x, size), number(point.y, size)
        return {"crv": curves[public_key.curve.name], "kty": "EC", "x": x, "y": y}
    raise ValueError("only RSA and EC keys are supported")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{name}":"{jwk[name]}"' for name in required) + "}"
    return _b64(hashlib.sha256(canonical.encode()).digest())


def make_key(material: str, algorithm: str) -> Key:
    """A ``Key`` from a secret (HMAC) or a PEM key (RSA/EC), named by its derived ``kid``."""
    if algorithm in HMAC_ALGORITHMS:
        if "-----BEGIN" in material:
            raise ValueError(f"{algorithm} takes a secret, not a PEM key (an RSA key is never an HMAC secret)")
        return Key(hmac_kid(material), material, material)
    loaded, private = _load_pem(material)
    public = loaded.public_key() if private else loaded
    jwk = public_jwk(public)
    expected = "RSA" if algorithm.startswith("RS") else "EC"
    if jwk["kty"] != expected:
        raise ValueError(f"{algorithm} needs an {expected} key, not {jwk['kty']}")
    from cryptography.hazmat.primitives import serialization

    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return Key(thumbprint(jwk), material if private else None, public_pem)


class KeySet:
    """The current key (which signs) and the previous keys (which still verify), one algorithm."""

    def __init__(self, current: str, *, algorithm: str = "HS256", previous: Iterable[str] = ()) -> None:
        self.algorithm = algorithm
        self.current = make_key(current, algorithm)
        self.by_kid: dict[str, Key] = {self.current.kid: self.current}
        for material in previous:
            key = make_key(material, algorithm)
            self.by_kid.setdefault(key.kid, key)

    def for_token(self, kid: Any) -> Key:
        """The key a token's header names, the current one for a token without ``kid``, or ``InvalidToken``."""
        if kid is None:
            return self.current
        key = self.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown_key", "The token is signed with a key this server does not know.")
        return key

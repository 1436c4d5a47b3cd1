"""``KeySet``: the keys tokens are signed and verified with (Redis key names are
``gateway.redis_keys``), each named by a ``kid`` derived from the key itself, so every instance and
every restart agree on it without configuration.

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
    """The ``kid`` of an HMAC secret: derived from it by a keyed hash, so it names the key without
    revealing it (16 characters)."""
    return _b64(hmac.new(secret.encode(), b"kapi key id", hashlib.sha256).digest()[:12])


def _load_pem(pem: str, algorithm: str) -> tuple[Any, bool]:
    """The key in ``pem`` and whether it is private; ``ValueError`` (never showing the key) otherwise."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if "-----BEGIN" not in pem:
        raise ValueError(f"{algorithm} takes a PEM key, not a secret")
    data = pem.encode()
    try:
        if b"PRIVATE KEY" in data:
            return serialization.load_pem_private_key(data, password=None), True
        return serialization.load_pem_public_key(data), False
    except TypeError:  # cryptography: encrypted, and no password given
        raise ValueError("the PEM private key is encrypted; give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError("the PEM block is not a key that can be loaded (malformed, or an unsupported kind)") from None


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
        if public_key.curve.name not in _CURVES:
            raise ValueError(f"the EC key's curve {public_key.curve.name} is not one JWS uses (P-256, P-384, P-521)")
        size = (public_key.curve.key_size + 7) // 8
        point = public_key.public_numbers()
        x, y = number(point.x, size), number(point.y, size)
        return {"crv": _CURVES[public_key.curve.name], "kty": "EC", "x": x, "y": y}
    raise ValueError("only RSA and EC keys are supported")


_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
#: RFC 7518 §3.4: each ECDSA algorithm is bound to one curve.
_CURVE_OF = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{name}":"{jwk[name]}"' for name in required) + "}"
    return _b64(hashlib.sha256(canonical.encode()).digest())


def make_key(material: str, algorithm: str) -> Key:
    """A ``Key`` from a secret (HMAC) or a PEM key (RSA/EC), named by its derived ``kid``. Raises
    ``ValueError`` saying what is wrong (never showing the key): a PEM key for HMAC, a secret or a
    malformed or encrypted PEM for RSA/EC, a key of the wrong kind or curve for the algorithm."""
    if algorithm in HMAC_ALGORITHMS:
        if "-----BEGIN" in material:
            raise ValueError(f"{algorithm} takes a secret, not a PEM key (an RSA key is never an HMAC secret)")
        if not material:
            raise ValueError(f"{algorithm} needs a non-empty secret")
        return Key(hmac_kid(material), material, material)
    loaded, private = _load_pem(material, algorithm)
    public = loaded.public_key() if private else loaded
    expected = "RSA" if algorithm.startswith("RS") else "EC"
    try:
        jwk = public_jwk(public)
    except ValueError as exc:
        raise ValueError(f"{algorithm} needs an {expected} key: {exc}") from None
    if jwk["kty"] != expected:
        raise ValueError(f"{algorithm} needs an {expected} key, not an {jwk['kty']} key")
    if expected == "EC" and jwk["crv"] != _CURVE_OF.get(algorithm, jwk["crv"]):
        raise ValueError(f"{algorithm} needs an EC key on {_CURVE_OF[algorithm]}, not {jwk['crv']}")
    from cryptography.hazmat.primitives import serialization

    public_pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    return Key(thumbprint(jwk), material if private else None, public_pem)


class KeySet:
    """The current key (which signs) and the previous keys (which still verify), one algorithm.

    ``current`` and each of ``previous`` are an HMAC secret, or a PEM key for the RS and ES
    algorithms (a private key to sign; a public key only verifies). Each key's ``kid`` is derived
    from the key, so tokens name the key they were signed with. ``ValueError`` for a key that does
    not fit ``algorithm``."""

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

"""JWT issuing and verification (python-jose), in one place.

Verification accepts exactly one algorithm, so ``alg: none`` and algorithm confusion (an HS256 token
"signed" with an RS256 public key) are refused before any key is used; it requires ``sub``, ``jti``,
``exp`` and a ``type`` claim so a refresh token never passes as an access token (RFC 8725 §3.11).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from jose import jwt
from jose.exceptions import ExpiredSignatureError, JWTClaimsError, JWTError

TokenType = Literal["access", "refresh"]
Claims = dict[str, Any]

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ALGORITHMS = HMAC_ALGORITHMS | {"RS256", "RS384", "RS512", "ES256", "ES384", "ES512"}

#: The longest token lifetime (``exp - iat``) accepted by default: a revocation or a log-out mark is
#: kept this long (plus the leeway), so a longer-lived token could outlive its revocation; such
#: tokens are refused instead.
DEFAULT_MAX_LIFETIME = 31 * 86400


class InvalidToken(Exception):
    """The token cannot be accepted; ``reason`` is a short machine label (for metrics), the message
    is safe to show to the client (``error_description``) and never contains the token."""

    def __init__(self, reason: str, description: str) -> None:
        super().__init__(description)
        self.reason = reason
        self.description = description


class TokenPair(NamedTuple):
    access_token: str
    refresh_token: str
    expires_in: int
    access: Claims
    refresh: Claims


def new_id() -> str:
    """A fresh random id (``jti``, ``sid``): 128 bits, URL-safe."""
    return secrets.token_urlsafe(16)


def _frozen(value: Any) -> Any:
    """Nested claim values made read-only (lists become tuples, objects read-only mappings), so the
    claims kept for a token's later requests cannot be changed through one request's copy."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


def _public_key_of(private_pem: str) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


class TokenVerifier:
    """Verifies bearer tokens against one key and one algorithm.

    A token that verified once is remembered (up to ``cache_size`` tokens, until it expires), so a
    client's next requests skip the signature check; revocation is not cached, it is checked in
    Redis on every request by the blacklist. Each call returns a fresh ``dict`` whose nested values
    are read-only, so what one request does with its claims never reaches another.

    ``max_lifetime`` bounds ``exp - iat``: the blacklist keeps a revocation for at most that long
    (plus ``leeway``), so a token that could outlive it is refused rather than accepted. A token
    whose ``crit`` header names any extension is refused (RFC 7515 §4.1.11: none is understood
    here); ``jku``, ``x5u`` and ``kid`` are never followed or used with a single key.
    """

    def __init__(
        self,
        *,
        key: str,
        algorithm: str = "HS256",
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        max_length: int = 8192,
        cache_size: int = 10_000,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        if leeway < 0 or max_lifetime < 1:
            raise ValueError("leeway must be >= 0 and max_lifetime >= 1 second")
        if not key:
            raise ValueError("a verification key is required")
        if algorithm not in HMAC_ALGORITHMS and "PRIVATE KEY" in key:
            key = _public_key_of(key)
        self.key = key
        self.algorithm = algorithm
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.max_length = max_length
        self.cache_size = cache_size
        self._options = {
            "require_exp": True,
            "require_iat": True,
            "require_sub": True,
            "require_jti": True,
            "require_iss": issuer is not None,
            "require_aud": audience is not None,
            "verify_iss": issuer is not None,
            "verify_aud": audience is not None,
            "leeway": leeway,
        }
        self._verified: OrderedDict[str, Claims] = OrderedDict()

    def verify(self, token: str, *, expected_type: TokenType = "access", allow_expired: bool = False) -> Claims:
        """The token's claims, or ``InvalidToken``. ``allow_expired`` accepts a token past its
        ``exp`` (everything else is still checked): for a logout, which may end an expired token's
        login."""
        if allow_expired:
            decoded = self._decode(token, verify_exp=False)
            if decoded["type"] != expected_type:
                raise InvalidToken("wrong_type", f"A {decoded['type']} token cannot be used here.")
            return decoded
        claims = self._verified.get(token)
        if claims is not None:
            if claims["exp"] + self.leeway <= time.time():
                del self._verified[token]
                raise InvalidToken("expired", "The token has expired.")
        else:
            claims = {name: _frozen(value) for name, value in self._decode(token).items()}
            if self.cache_size:
                self._verified[token] = claims
                if len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
        if claims["type"] != expected_type:
            raise InvalidToken("wrong_type", f"A {claims['type']} token cannot be used here; send {expected_type}.")
        return dict(claims)

    def _decode(self, token: str, *, verify_exp: bool = True) -> Claims:
        if len(token) > self.max_length:
            raise InvalidToken("too_long", "The token is too long.")
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # JWTError, or worse on hostile input
            raise InvalidToken("malformed", "The token is not a well-formed JWT.") from None
        if not isinstance(header, dict) or header.get("alg") != self.algorithm:
            raise InvalidToken("wrong_algorithm", f"Only {self.algorithm} tokens are accepted.")
        if "crit" in header:
            raise InvalidToken("bad_header", "The token's crit header names extensions this server does not support.")
        try:
            claims: Claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                options=self._options if verify_exp else {**self._options, "verify_exp": False},
                issuer=self.issuer,
                audience=self.audience,
            )
        except ExpiredSignatureError:
            raise InvalidToken("expired", "The token has expired.") from None
        except JWTClaimsError as exc:
            raise InvalidToken("bad_claims", f"The token's claims are not valid: {exc}.") from None
        except JWTError:
            raise InvalidToken("bad_signature", "The token's signature does not verify.") from None
        except Exception:  # python-jose can raise others on hostile input (bad base64, wrong key types)
            raise InvalidToken("malformed", "The token is not a well-formed JWT.") from None
        now = time.time()
        for name in ("sub", "jti"):
            if not isinstance(claims.get(name), str) or not claims[name] or len(claims[name]) > 256:
                raise InvalidToken("bad_claims", f"The token's {name} claim must be a non-empty string.")
        if claims.get("type") not in ("access", "refresh"):
            raise InvalidToken("bad_claims", "The token's type claim must be access or refresh.")
        if not isinstance(claims.get("exp"), (int, float)) or not isinstance(claims.get("iat"), (int, float)):
            raise InvalidToken("bad_claims", "The token's exp and iat must be numbers.")
        if claims["iat"] > now + self.leeway:
            raise InvalidToken("not_yet_valid", "The token was issued in the future.")
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise InvalidToken("bad_claims", f"The token lives longer than the {self.max_lifetime} s accepted here.")
        if "sid" in claims and (not isinstance(claims["sid"], str) or len(claims["sid"]) > 256):
            raise InvalidToken("bad_claims", "The token's sid claim must be a string.")
        return claims


class TokenIssuer:
    """Mints access and refresh tokens: ``sub``, ``jti``, ``iat``, ``exp``, ``type``, ``sid``, and
    ``iss``/``aud`` when configured."""

    def __init__(
        self,
        *,
        key: str,
        algorithm: str = "HS256",
        access_ttl: int = 86400,
        refresh_ttl: int = 30 * 86400,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        self.key = key
        self.algorithm = algorithm
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.issuer = issuer
        self.audience = audience

    def claims(self, subject: str, token_type: TokenType, *, session_id: str, extra: Mapping[str, Any] = {}) -> Claims:
        now = int(time.time())
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl
        claims: Claims = {**extra, "sub": subject, "jti": new_id(), "iat": now, "exp": now + ttl, "type": token_type,
                          "sid": session_id}  # fmt: skip
        if self.issuer:
            claims["iss"] = self.issuer
        if self.audience:
            claims["aud"] = self.audience
        return claims

    def encode(self, claims: Claims) -> str:
        token: str = jwt.encode(claims, self.key, algorithm=self.algorithm)
        return token

    def issue_pair(self, subject: str, *, session_id: str, extra: Mapping[str, Any] = {}) -> TokenPair:
        access = self.claims(subject, "access", session_id=session_id, extra=extra)
        refresh = self.claims(subject, "refresh", session_id=session_id)
        return TokenPair(self.encode(access), self.encode(refresh), self.access_ttl, access, refresh)

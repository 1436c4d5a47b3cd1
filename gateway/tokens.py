"""JWT issuing and verification (python-jose), in one place.

Verification accepts exactly one algorithm, so ``alg: none`` and algorithm confusion (an HS256 token
"signed" with an RS256 public key) are refused before any key is used; it requires ``sub``, ``jti``,
``exp`` and a ``type`` claim so a refresh token never passes as an access token (RFC 8725 §3.11).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import math
import re
import secrets
import string
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from jose import jwt
from jose.exceptions import JWTError

from gateway.claims import ALGORITHMS, HMAC_ALGORITHMS, Claims, InvalidToken, TokenType
from gateway.jwks import JwksKeySet, KeysUnavailable, UnknownKey
from gateway.signing_keys import Key, KeySet

__all__ = ["HMAC_ALGORITHMS", "Claims", "InvalidToken", "TokenIssuer", "TokenPair", "TokenType", "TokenVerifier"]

#: The longest token lifetime (``exp - iat``) accepted by default: a revocation or a log-out mark is
#: kept this long (plus the leeway), so a longer-lived token could outlive its revocation; such
#: tokens are refused instead.
DEFAULT_MAX_LIFETIME = 31 * 86400


class TokenPair(NamedTuple):
    """What ``TokenIssuer.issue_pair`` returns: the two encoded tokens (what a client is sent),
    ``expires_in`` (the access token's lifetime, seconds) and each token's claims (keep
    ``refresh["jti"]`` for ``SessionStore.open``)."""

    access_token: str
    refresh_token: str
    expires_in: int
    access: Claims
    refresh: Claims


def new_id() -> str:
    """A fresh random id (``jti``, ``sid``): 128 bits, URL-safe."""
    return secrets.token_urlsafe(16)


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_PADDED_SEGMENT = re.compile(r"[A-Za-z0-9_-]*=*")
_ALPHABET = {char: index for index, char in enumerate(string.ascii_letters.swapcase() + string.digits + "-_")}
#: For a segment of length 4n + r, the low bits of its last character that encode no data (RFC 4648 §3.5).
_UNUSED_BITS = {0: 0, 2: 0b1111, 3: 0b11}


def is_canonical(token: str) -> bool:
    """True when ``token`` is a JWS in canonical compact form (RFC 7515 §7.1, §2): three segments of
    base64url without padding, each last character's unused low bits zero. Decoders (python-jose
    among them) also take ``=`` padding and non-zero unused bits, so one token has many spellings that
    verify alike; refusing all but this one means a re-spelled token is never a different token."""
    segments = token.split(".")
    if len(segments) != 3:
        return False
    for segment in segments:
        if _SEGMENT.fullmatch(segment) is None:
            return False
        unused = _UNUSED_BITS.get(len(segment) % 4)
        if unused is None or (unused and _ALPHABET[segment[-1]] & unused):
            return False
    return True


def _check_spelling(token: str) -> None:
    """``InvalidToken`` unless ``token`` is canonical: ``malformed`` when it is not three base64url
    segments at all, ``not_canonical`` when it is another spelling of one (padding, unused bits)."""
    if is_canonical(token):
        return
    segments = token.split(".")
    if len(segments) != 3 or any(_PADDED_SEGMENT.fullmatch(segment) is None for segment in segments):
        raise InvalidToken("malformed", "The token is not a well-formed JWT (three base64url segments).")
    raise InvalidToken("not_canonical", "The token is not in canonical form (base64url without padding, RFC 7515).")


def _frozen(value: Any) -> Any:
    """Nested claim values made read-only (lists become tuples, objects read-only mappings), so the
    claims kept for a token's later requests cannot be changed through one request's copy."""
    if isinstance(value, dict):
        return MappingProxyType({key: _frozen(item) for key, item in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(item) for item in value)
    return value


class _Signer(NamedTuple):
    """Where a token's key came from: the header's ``kid``, whether the identity provider's set holds
    it (``external``), the algorithm that source accepts, and the ``Key`` the set gave."""

    kid: str | None
    external: bool
    algorithm: str
    key: Key


class _Remembered:
    """A token that verified: its (frozen) claims, its signer, the time claims the memory checks on
    every use, and ``until`` (``exp`` plus the leeway), when it is dropped."""

    __slots__ = ("claims", "exp", "iat", "nbf", "signer", "until")

    def __init__(self, claims: Claims, signer: _Signer, leeway: float) -> None:
        self.claims = claims
        self.signer = signer
        self.exp: float = claims["exp"]
        self.nbf: float = claims.get("nbf", 0)
        self.iat: float = claims["iat"]
        self.until = self.exp + leeway


class TokenVerifier:
    """Verifies bearer tokens: ours against a ``KeySet`` (``key=`` makes a set of one), and, with
    ``jwks``, an identity provider's against its published keys.

    Each source accepts exactly one algorithm, checked against the header before any key is used, so
    ``alg: none`` and algorithm confusion (an HS256 token "signed" with an RSA public key) are refused.
    The header's ``kid`` picks the key: one of ours (current or previous), else one of the JWKS; a
    token without ``kid`` is verified with our current key. ``jku``, ``x5u`` are never followed.

    Our tokens need ``sub``, ``jti``, ``iat``, ``exp`` and ``type`` (a refresh token never passes as
    an access token, RFC 8725 §3.11). An identity provider's need ``sub``, ``iat``, ``exp``, and the
    configured ``iss`` and ``aud``; without a ``type`` claim they are access tokens (Keycloak's
    ``typ: Bearer`` too), one whose ``type``/``typ`` says refresh or ID is refused, and one without
    ``jti`` is named by a hash of its signed header and claims (``h.`` + 22 characters), which the
    blacklist uses. Only the canonical compact form of a token is accepted (``is_canonical``).

    A token that verified is remembered by its exact (canonical) string, so a client's next requests
    cost a dict lookup instead of a signature check and claim parsing. Each use still checks, with
    the same code as a fresh verification and at that moment: ``exp`` (with the leeway), ``nbf``,
    ``iat`` not ahead, the expected ``type``, and that the key set still gives the very key the token
    verified with for its ``kid`` (a key removed, replaced, or a JWKS too stale to trust: verified
    afresh, and refused if it no longer verifies). Only successes are remembered, so a key that
    arrives later is picked up; at most ``max_remembered`` tokens (least recently used out; ``0``
    turns the memory off), each dropped once past ``exp`` plus the leeway. ``issuer``, ``audience``,
    ``leeway`` and ``max_lifetime`` are fixed at construction. Revocation is not remembered: the
    blacklist checks it in Redis on every request. Each call returns a fresh ``dict`` whose nested
    values are read-only, so what one request does with its claims never reaches another.

    ``issuer`` and ``audience``, when given, must match the token's ``iss`` and ``aud``;
    ``max_length`` bounds the token's size (characters). ``max_lifetime`` bounds ``exp - iat``: the
    blacklist keeps a revocation for at most that long (plus ``leeway``), so a token that could
    outlive it is refused rather than accepted. A token whose ``crit`` header names any extension is
    refused (RFC 7515 §4.1.11: none is understood here). ``clock`` gives the time (seconds since
    1970, ``time.time`` by default) every time claim is checked against; tests pass their own.
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        keys: KeySet | None = None,
        algorithm: str = "HS256",
        jwks: JwksKeySet | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway: int = 30,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        max_length: int = 8192,
        max_remembered: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        if leeway < 0 or max_lifetime < 1:
            raise ValueError("leeway must be >= 0 and max_lifetime >= 1 second")
        if max_remembered < 0:
            raise ValueError("max_remembered must be >= 0 (0 turns the memory of verified tokens off)")
        if keys is None:
            if not key:
                raise ValueError("a verification key is required")
            keys = KeySet(key, algorithm=algorithm)
        if jwks is not None and (not issuer or not audience):
            raise ValueError("tokens from a JWKS need an issuer and an audience to check")
        self.keys = keys
        self.algorithm = keys.algorithm
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.max_length = max_length
        self.max_remembered = max_remembered
        self.clock = clock
        # python-jose checks the header and the signature only; every claim is checked here
        # (``_check_claims``), so each refusal can say exactly what is wrong.
        self._options = {name: False for name in _JOSE_CLAIM_CHECKS}
        self._required = ("sub", "jti", "iat", "exp", "type") + ("iss",) * bool(issuer) + ("aud",) * bool(audience)
        self._external_required = tuple(name for name in self._required if name not in ("jti", "type"))
        # Tokens that verified, least recently used first; and a heap of (until, token) that finds
        # the expired ones. The heap may hold tokens already evicted: they are skipped when popped,
        # and it is rebuilt from the memory when it grows past twice the bound.
        self._remembered: OrderedDict[str, _Remembered] = OrderedDict()
        self._expiries: list[tuple[float, str]] = []

    @property
    def key(self) -> Any:
        """The current key's verification material."""
        return self.keys.current.verifying

    @property
    def remembered(self) -> int:
        """How many verified tokens are remembered now (a gauge, at most ``max_remembered``)."""
        return len(self._remembered)

    def verify(self, token: str, *, expected_type: TokenType = "access", allow_expired: bool = False) -> Claims:
        """The token's claims, or ``InvalidToken`` (``UnknownKey`` for a ``kid`` the JWKS does not
        hold yet: an async caller may ``jwks.learn`` it and try again). ``allow_expired`` accepts a
        token past its ``exp`` (everything else is still checked): for a logout, which may end an
        expired token's login."""
        if allow_expired:
            decoded = self._verify(token, verify_exp=False)[0]
            if decoded["type"] != expected_type:
                raise InvalidToken("wrong_type", f"A {decoded['type']} token cannot be used here.")
            return decoded
        claims = self._recall(token) if self._remembered else None
        if claims is None:
            decoded, signer = self._verify(token)
            claims = {name: _frozen(value) for name, value in decoded.items()}
            if self.max_remembered:
                self._remember(token, claims, signer)
        if claims["type"] != expected_type:
            raise InvalidToken("wrong_type", f"A {claims['type']} token cannot be used here; send {expected_type}.")
        return dict(claims)

    async def verify_fetching(
        self, token: str, *, expected_type: TokenType = "access", allow_expired: bool = False
    ) -> Claims:
        """``verify``, and when the token names a ``kid`` the identity provider's key set has not
        fetched yet (a key it may just have published), fetch the set once (rate-limited, shared by
        every caller) and verify again: the one place that sequence is written."""
        try:
            return self.verify(token, expected_type=expected_type, allow_expired=allow_expired)
        except UnknownKey as unknown:
            if self.jwks is None:
                raise
            await self.jwks.learn(unknown.kid)
        return self.verify(token, expected_type=expected_type, allow_expired=allow_expired)

    def _recall(self, token: str) -> Claims | None:
        """The remembered claims of ``token`` when it may pass now, ``InvalidToken`` when a time check
        refuses it (as a fresh verification would), None when it must be verified afresh."""
        now = self.clock()
        if self._expiries and self._expiries[0][0] <= now:
            self._forget_expired(now)
        entry = self._remembered.get(token)
        if entry is None:
            return None
        signer = entry.signer
        try:
            # The key set is asked as a fresh verification asks it; the same Key object (or an equal
            # one, as a JWKS refetch builds) means the signature checked before still holds.
            current = self._signer(signer.kid)
        except InvalidToken:  # the key is gone or cannot be trusted now: the fresh path says why
            current = None
        if current is None or current != signer:
            del self._remembered[token]
            return None
        self._check_times(entry.exp, entry.nbf, entry.iat, now)
        if current.key is not signer.key:
            entry.signer = current  # an equal key from a refetched set: compare by identity from now on
        self._remembered.move_to_end(token)
        return entry.claims

    def _remember(self, token: str, claims: Claims, signer: _Signer) -> None:
        entry = _Remembered(claims, signer, self.leeway)
        remembered = self._remembered
        remembered[token] = entry
        remembered.move_to_end(token)
        heapq.heappush(self._expiries, (entry.until, token))
        while len(remembered) > self.max_remembered:
            remembered.popitem(last=False)
        if len(self._expiries) > 2 * self.max_remembered:
            self._expiries = [(item.until, key) for key, item in remembered.items()]
            heapq.heapify(self._expiries)

    def _forget_expired(self, now: float) -> None:
        """Drops every remembered token past ``exp`` plus the leeway."""
        expiries, remembered = self._expiries, self._remembered
        while expiries and expiries[0][0] <= now:
            token = heapq.heappop(expiries)[1]
            entry = remembered.get(token)
            if entry is not None and entry.until <= now:
                del remembered[token]

    def _source(self, kid: str | None) -> tuple[bool, str]:
        """Whether a token naming ``kid`` is the identity provider's, and the algorithm it must use."""
        external = self.jwks is not None and kid is not None and kid not in self.keys.by_kid
        return external, self.jwks.algorithm if external and self.jwks is not None else self.algorithm

    def _signer(self, kid: str | None) -> _Signer:
        """The key a token naming ``kid`` is verified with now, or ``InvalidToken`` (``UnknownKey``)."""
        external, algorithm = self._source(kid)
        if external and self.jwks is not None:
            try:
                key = self.jwks.for_token(kid)
            except KeysUnavailable as exc:
                raise InvalidToken("keys_unavailable", f"The identity provider's keys: {exc}.") from None
        else:
            key = self.keys.for_token(kid)
        return _Signer(kid, external, algorithm, key)

    def _verify(self, token: str, *, verify_exp: bool = True) -> tuple[Claims, _Signer]:
        """The token's claims and the key it verified with, checked in full; ``InvalidToken`` otherwise."""
        if len(token) > self.max_length:
            raise InvalidToken("too_long", "The token is too long.")
        _check_spelling(token)
        try:
            header = jwt.get_unverified_header(token)
        except Exception:  # JWTError, or worse on hostile input
            raise InvalidToken("malformed", "The token is not a well-formed JWT.") from None
        if not isinstance(header, dict):
            raise InvalidToken("malformed", "The token is not a well-formed JWT.")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise InvalidToken("bad_header", "The token's kid header must be a string.")
        external, algorithm = self._source(kid)
        if header.get("alg") != algorithm:
            raise InvalidToken("wrong_algorithm", f"Only {algorithm} tokens are accepted.")
        if "crit" in header:
            raise InvalidToken("bad_header", "The token's crit header names extensions this server does not support.")
        signer = self._signer(kid)
        try:
            claims: Claims = jwt.decode(token, signer.key.verifying, algorithms=[algorithm], options=self._options)
        except JWTError:
            # The signature is checked before the claims are read: claims that are not a JSON object
            # under a good signature are malformed, anything else here is the signature.
            try:
                readable = isinstance(jwt.get_unverified_claims(token), dict)
            except Exception:  # JWTError, or worse on hostile input
                readable = False
            if readable:
                raise InvalidToken("bad_signature", "The token's signature does not verify.") from None
            raise InvalidToken("malformed", "The token's claims are not a JSON object.") from None
        except Exception:  # python-jose can raise others on hostile input (bad base64, wrong key types)
            raise InvalidToken("malformed", "The token is not a well-formed JWT.") from None
        self._check_claims(claims, self._external_required if external else self._required, verify_exp=verify_exp)
        if external:
            claims = _as_external(claims, token)
        if claims.get("type") not in ("access", "refresh"):
            raise InvalidToken("bad_claims", "The token's type claim must be access or refresh.")
        return claims, signer

    def _check_claims(self, claims: Claims, required: tuple[str, ...], *, verify_exp: bool) -> None:
        """RFC 7519 §4.1 and Kapı's own rules; each refusal names its cause, never the claim's value."""
        missing = [name for name in required if name not in claims]
        if missing:
            names = ", ".join(missing)
            raise InvalidToken("missing_claim", f"The token has no {names} claim{'s' * (len(missing) > 1)}.")
        for name in ("sub", "jti"):
            if name in claims:
                value = claims[name]
                if not isinstance(value, str):
                    raise InvalidToken("bad_claims", f"The token's {name} claim must be a string.")
                if not value:
                    raise InvalidToken("bad_claims", f"The token's {name} claim is empty.")
                if len(value) > 256:
                    raise InvalidToken("bad_claims", f"The token's {name} claim is longer than 256 characters.")
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name, 0)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise InvalidToken("bad_claims", f"The token's {name} claim must be a number (seconds since 1970).")
        self._check_times(claims["exp"], claims.get("nbf", 0), claims["iat"], self.clock(), verify_exp=verify_exp)
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise InvalidToken("bad_claims", f"The token lives longer than the {self.max_lifetime} s accepted here.")
        if self.issuer is not None and claims["iss"] != self.issuer:
            raise InvalidToken("wrong_issuer", "The token was issued by another issuer than the one trusted here.")
        if self.audience is not None:
            audience = claims["aud"]
            audiences = audience if isinstance(audience, list) else [audience]
            if self.audience not in audiences:
                raise InvalidToken("wrong_audience", "The token is meant for another audience.")
        if "sid" in claims and (not isinstance(claims["sid"], str) or len(claims["sid"]) > 256):
            raise InvalidToken("bad_claims", "The token's sid claim must be a string of at most 256 characters.")

    def _check_times(self, exp: float, nbf: float, iat: float, now: float, *, verify_exp: bool = True) -> None:
        """The checks that depend on the time: one function for a fresh verification and a remembered
        token, so the memory can never accept what a fresh verification would refuse at ``now``."""
        if verify_exp and exp + self.leeway <= now:
            raise InvalidToken("expired", "The token has expired.")
        if nbf > now + self.leeway:
            raise InvalidToken("not_yet_valid", "The token is not valid yet (nbf).")
        if iat > now + self.leeway:
            raise InvalidToken("not_yet_valid", "The token was issued in the future.")


#: python-jose's claim checks, all turned off (see ``TokenVerifier._check_claims``).
_JOSE_CLAIM_CHECKS = (
    "verify_aud", "verify_iat", "verify_exp", "verify_nbf", "verify_iss", "verify_sub", "verify_jti",
    "verify_at_hash", "require_aud", "require_iat", "require_exp", "require_nbf", "require_iss",
    "require_sub", "require_jti", "require_at_hash",
)  # fmt: skip

_NOT_ACCESS = {"refresh", "id", "id_token", "idtoken", "offline"}


def _as_external(claims: Claims, token: str) -> Claims:
    """An identity provider's token in Kapı's terms: an access token (or refused), with a ``jti``.
    IdP tokens carry no Kapı login: a ``sid`` they hold names the IdP's session, not one of ours."""
    for name in ("type", "typ"):
        value = claims.get(name)
        if isinstance(value, str) and value.lower() in _NOT_ACCESS:
            raise InvalidToken("wrong_type", f"A {value} token cannot be used here; send an access token.")
    claims = {name: value for name, value in claims.items() if name != "sid"}
    claims["type"] = "access"
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        # Named by what was signed, not by the signature: an ECDSA signature has a second valid form
        # (s -> n - s), so the same header and claims can arrive under two signatures.
        digest = hashlib.sha256(token.rpartition(".")[0].encode()).digest()[:16]
        claims["jti"] = "h." + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return claims


class TokenIssuer:
    """Mints access and refresh tokens with the current key of ``keys`` (its ``kid`` in the header):
    ``sub``, ``jti``, ``iat``, ``exp``, ``type``, ``sid``, and ``iss``/``aud`` when configured.

    ``key`` (with ``algorithm``) makes a ``KeySet`` of one; it must be able to sign. Access tokens
    live ``access_ttl`` seconds, refresh tokens ``refresh_ttl``; ``issuer`` and ``audience`` become
    ``iss`` and ``aud``. Mint a pair per sign-in with ``issue_pair``."""

    def __init__(
        self,
        *,
        key: str | None = None,
        keys: KeySet | None = None,
        algorithm: str = "HS256",
        access_ttl: int = 86400,
        refresh_ttl: int = 30 * 86400,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported JWT algorithm {algorithm!r}")
        if keys is None:
            if not key:
                raise ValueError("a signing key is required")
            keys = KeySet(key, algorithm=algorithm)
        if keys.current.signing is None:
            raise ValueError("the current key must be able to sign (a secret, or a PEM private key)")
        self.keys = keys
        self.algorithm = keys.algorithm
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.issuer = issuer
        self.audience = audience

    def claims(self, subject: str, token_type: TokenType, *, session_id: str, extra: Mapping[str, Any] = {}) -> Claims:
        """The claims of a new token, not yet signed: ``extra`` first, then ``sub`` (``subject``, the
        user id), a fresh ``jti``, ``iat`` (now), ``exp`` (now plus ``access_ttl`` or ``refresh_ttl``
        by ``token_type``, ``"access"`` or ``"refresh"``), ``type``, ``sid`` (``session_id``) and
        ``iss``/``aud`` when configured; Kapı's own claims win over ``extra``. Sign them with
        ``encode``."""
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
        """``claims`` signed with the current key (its ``kid`` in the header): the compact token
        string a client sends as ``Authorization: Bearer <token>``."""
        current = self.keys.current
        token: str = jwt.encode(claims, current.signing, algorithm=self.algorithm, headers={"kid": current.kid})
        return token

    def issue_pair(self, subject: str, *, session_id: str, extra: Mapping[str, Any] = {}) -> TokenPair:
        """A new access and refresh token for the user ``subject`` (the ``sub`` claim), as a
        ``TokenPair``. ``session_id`` names the login both tokens belong to (their ``sid`` claim):
        make one per sign-in with ``gateway.tokens.new_id()`` and record it with ``SessionStore.open``
        when you use sessions, so ending that login revokes both tokens; without a ``SessionStore``
        any unique string will do. ``extra`` adds claims to the access token only (e.g. ``scope``)."""
        access = self.claims(subject, "access", session_id=session_id, extra=extra)
        refresh = self.claims(subject, "refresh", session_id=session_id)
        return TokenPair(self.encode(access), self.encode(refresh), self.access_ttl, access, refresh)

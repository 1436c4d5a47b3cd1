"""``JwksKeySet``: the signing keys of an identity provider (Keycloak, Auth0, Cognito, Azure AD,
Google), from its JWKS document, selected by ``kid``.

- Fetched over HTTPS (plain HTTP only to a loopback address, for tests), cached for the document's
  ``Cache-Control: max-age``, kept within ``min_age`` and ``max_age``.
- Never in the way of a request: when the cache is past its age, one refresh runs in the background
  (single-flight in the process) while requests go on with the cached keys; if the endpoint is down,
  the cached keys keep serving for ``stale_for`` past their age (then verification answers 503).
- A token naming an unknown ``kid`` waits for one refetch, but at most one per ``refetch_interval``
  in the process, so a flood of random ``kid``s cannot become a flood of fetches; then it is refused.
- Only the configured algorithm counts: a JWK whose ``alg`` says otherwise, whose key type does not
  fit it (an RSA key is never an HMAC secret: HMAC algorithms are refused here at all), or whose
  ``use`` is not ``sig`` is ignored. ``jku`` and ``x5u`` in a token are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import re
import time
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from gateway.claims import HMAC_ALGORITHMS, InvalidToken
from gateway.signing_keys import Key, thumbprint

logger = logging.getLogger("gateway.jwks")

_MAX_AGE = re.compile(r"max-age=(\d+)")
_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}


class UnknownKey(InvalidToken):
    """The token names a ``kid`` the key set does not (yet) hold; an async caller may refetch once."""

    def __init__(self, kid: str | None) -> None:
        super().__init__("unknown_key", "The token is signed with a key this server does not know.")
        self.kid = kid


class KeysUnavailable(Exception):
    """No usable keys: the JWKS endpoint has not answered (or not for longer than ``stale_for``)."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JwksKeySet:
    """Keys from the JWKS at ``url`` for ``algorithm`` (``RS256``, ``ES256``, ...), as the module
    docstring says: cached for the document's ``max-age`` kept within ``min_age`` and ``max_age``
    seconds, served ``stale_for`` seconds past that while the endpoint is down, refetched for an
    unknown ``kid`` at most every ``refetch_interval`` seconds, each fetch given ``timeout`` seconds.
    ``clock`` (seconds) is there so tests can move time. Pass it to ``TokenVerifier(jwks=...)``."""

    def __init__(
        self,
        url: str,
        *,
        algorithm: str,
        min_age: float = 60,
        max_age: float = 86400,
        stale_for: float = 86400,
        refetch_interval: float = 30,
        timeout: float = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and _loopback(parts.hostname or "")):
            raise ValueError("the JWKS URL must use https (plain http only to a loopback address)")
        if algorithm in HMAC_ALGORITHMS:
            raise ValueError(f"{algorithm} is an HMAC algorithm: a JWKS publishes public keys (RS*/ES*)")
        self.url = url
        self.algorithm = algorithm
        self.min_age = min_age
        self.max_age = max_age
        self.stale_for = stale_for
        self.refetch_interval = refetch_interval
        self.timeout = timeout
        #: Seconds, for the cache's age and the refetch interval; injectable so tests need not wait.
        self.clock = clock
        self.by_kid: dict[str, Key] = {}
        self.fresh_until = 0.0
        self.fetches = 0
        self._last_attempt = -refetch_interval
        self._fetching: asyncio.Task[None] | None = None

    def for_token(self, kid: Any) -> Key:
        """The key a token's header names, from the cache (no I/O). ``UnknownKey`` when it is not
        there; ``KeysUnavailable`` when the cache is too stale to trust."""
        now = self.clock()
        if now > self.fresh_until:
            self._refresh_in_background()
            if now > self.fresh_until + self.stale_for:
                if self.by_kid:
                    raise KeysUnavailable("the identity provider's keys are too old to trust")
                raise UnknownKey(kid if isinstance(kid, str) else None)
        key = self.by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise UnknownKey(kid if isinstance(kid, str) else None)
        return key

    async def learn(self, kid: str | None) -> None:
        """Refetch once for an unknown ``kid`` (at most once per ``refetch_interval``, shared by
        concurrent callers); never raises: the caller retries and refuses if it is still unknown."""
        if kid is not None and kid in self.by_kid and self.clock() <= self.fresh_until + self.stale_for:
            return
        if self._fetching is None and self.clock() - self._last_attempt < self.refetch_interval:
            return
        await asyncio.shield(self._start())

    def _refresh_in_background(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._fetching is None and self.clock() - self._last_attempt >= min(self.refetch_interval, 5):
            self._start()

    def _start(self) -> asyncio.Task[None]:
        if self._fetching is None:
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        return self._fetching

    async def _fetch(self) -> None:
        self._last_attempt = self.clock()
        try:
            document, age = await asyncio.to_thread(self._get)
            keys = self._keys(document)
        except Exception as exc:  # the endpoint is down or wrong: keep what we have
            logger.warning("fetching the JWKS from %s failed (%s); keeping %d cached key(s)", self.url, exc,
                           len(self.by_kid))  # fmt: skip
        else:
            self.by_kid = keys
            self.fresh_until = self.clock() + age
        finally:
            self._fetching = None

    def _get(self) -> tuple[dict[str, Any], float]:
        self.fetches += 1
        request = urllib.request.Request(self.url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            body = response.read(1_000_000)
            cache_control = response.headers.get("Cache-Control", "")
        match = _MAX_AGE.search(cache_control)
        age = float(match.group(1)) if match else self.min_age
        return json.loads(body), min(max(age, self.min_age), self.max_age)

    def _keys(self, document: dict[str, Any]) -> dict[str, Key]:
        keys: dict[str, Key] = {}
        for jwk in document.get("keys", []):
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("use", "sig") != "sig" or jwk.get("alg", self.algorithm) != self.algorithm:
                continue
            kty = "RSA" if self.algorithm.startswith(("RS", "PS")) else "EC"
            if jwk.get("kty") != kty or (kty == "EC" and jwk.get("crv") != _CURVES.get(self.algorithm)):
                continue
            public = {name: jwk[name] for name in ("kty", "n", "e", "crv", "x", "y") if name in jwk}
            try:
                thumbprint(public)  # the members a key of its type needs are all there
            except KeyError:
                continue
            keys[jwk["kid"]] = Key(jwk["kid"], None, {**public, "alg": self.algorithm})
        if not keys:
            raise ValueError(f"the JWKS has no {self.algorithm} signing key")
        return keys

"""``TokenBlacklist``: revocation of JWTs in Redis, checked in one round trip per request.

A token is refused when its ``jti`` is blacklisted (``blacklist:{user_id}:{jti}``, kept until no
verifier would accept the token any more: its ``exp`` plus the leeway; never the raw token), when the
user logged out everywhere after it was issued (``logout_all:{user_id}``), when it was issued before
Redis lost its data (the epoch, ``gateway.epoch``), or, for tokens with a ``sid``, when its login has
ended or lapsed (``gateway.sessions``). The check is ``lua/revocation.lua``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.epoch import DataLossEpoch
from gateway.redis_keys import Keys, escape
from gateway.scripts import ScriptSet
from gateway.sessions import SessionStore
from gateway.tokens import DEFAULT_MAX_LIFETIME, Claims
from gateway.types import RedisSource


class Verdict(IntEnum):
    """The result of a revocation check (the Lua script's return code)."""

    VALID = 0
    REVOKED = 1
    SESSION_ENDED = 2
    LOGGED_OUT_EVERYWHERE = 3
    ISSUED_BEFORE_DATA_LOSS = 4

    @property
    def description(self) -> str:
        """The sentence a refusal with this verdict says (the 401's ``error_description``)."""
        return _DESCRIPTIONS[self]


_DESCRIPTIONS = {
    Verdict.VALID: "",
    Verdict.REVOKED: "The token has been revoked.",
    Verdict.SESSION_ENDED: "The token's session has ended; log in again.",
    Verdict.LOGGED_OUT_EVERYWHERE: "The token was revoked by a log-out on all devices.",
    Verdict.ISSUED_BEFORE_DATA_LOSS: "The token predates a reset of the revocation store; log in again.",
}


class TokenBlacklist:
    """Revocation store. ``leeway`` and ``max_lifetime`` must be at least the verifier's (the gateway
    checks): a revocation is kept until the token's ``exp`` plus ``leeway`` and a log-out-everywhere
    mark for ``max_lifetime`` plus ``leeway``, the last moments a verifier could accept the token.
    With ``sessions``, tokens that carry a ``sid`` are valid only while their login lives. ``redis``
    is a client or a callable returning it, ``keys`` the key names (a prefix), ``breaker`` the
    process's shared ``CircuitBreaker``."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        keys: Keys | None = None,
        leeway: int = 30,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        sessions: SessionStore | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.sessions = sessions
        self.breaker = breaker or CircuitBreaker()
        self.epoch = DataLossEpoch(redis, keys=self.keys, breaker=self.breaker)
        self._scripts = ScriptSet("auth_check", "revoke", "revoke_all", "stream_check")

    @property
    def max_ttl(self) -> int:
        """The longest a revocation or a log-out mark is kept, seconds."""
        return self.max_lifetime + self.leeway

    def blacklist_key(self, claims: Claims) -> str:
        """``blacklist:{user_id}:{jti}``: the ``jti`` under its user, so one issuer's ``jti`` can never
        revoke (or un-revoke) another user's token."""
        return self.keys.user("blacklist", claims["sub"], escape(claims["jti"]))

    def check_keys(self, claims: Claims) -> list[str]:
        """The keys ``check_token`` (``lua/revocation.lua``) reads, in its order."""
        user = claims["sub"]
        session = self.sessions.key(user) if self.sessions is not None else self.keys.user("session", user)
        return [self.blacklist_key(claims), self.keys.user("logout_all", user), session, self.epoch.key(user)]

    def check_args(self, claims: Claims) -> list[Any]:
        """The arguments ``check_token`` takes after its keys."""
        sid = claims.get("sid")
        if self.sessions is not None and sid:
            field, touch_ms, idle_ms = self.sessions.check_args(sid)
        else:
            field, touch_ms, idle_ms = "", 0, 0
        return [field, int(claims["iat"]), touch_ms, idle_ms, 1 if self.epoch.checked else 0]

    async def verdict(self, claims: Claims) -> Verdict:
        """One round trip. Raises ``RedisUnavailable`` when Redis cannot answer."""
        scripts = self._bind()
        code = await self.breaker.call(
            lambda: scripts["auth_check"](keys=self.check_keys(claims), args=self.check_args(claims))
        )
        return Verdict(int(code))

    async def stream_verdict(self, claims: Claims) -> tuple[Verdict, float | None]:
        """For an open long-lived connection (``lua/stream_check.lua``): the verdict, without recording
        use of the login, and the seconds until the login lapses unless it is used (None without one).
        One round trip; ``RedisUnavailable`` when Redis cannot answer."""
        scripts = self._bind()
        sid = claims.get("sid")
        field, idle_ms = "", 0
        if self.sessions is not None and sid:
            field, _, idle_ms = self.sessions.check_args(sid)
        args = [field, int(claims["iat"]), idle_ms, 1 if self.epoch.checked else 0]
        code, left = await self.breaker.call(lambda: scripts["stream_check"](keys=self.check_keys(claims), args=args))
        return Verdict(int(code)), max(0, int(left)) / 1000 if field else None

    async def is_revoked(self, claims: Claims) -> bool:
        """True when the token with these verified claims must be refused (revoked, its login ended,
        logged out everywhere, or issued before a data loss; ``verdict`` says which). One round trip;
        ``RedisUnavailable`` when Redis cannot answer. Behind the middleware you need not call it:
        every request is checked already."""
        return await self.verdict(claims) is not Verdict.VALID

    async def revoke(self, claims: Claims) -> int:
        """Blacklist this token's ``jti`` until no verifier would accept it (``exp`` + leeway);
        returns the TTL set, seconds (0 when it is already past that).

        It takes the token's verified claims, not the token string: behind the middleware they are
        ``request.user.claims`` (``scope["user"].claims``); from a raw token,
        ``TokenVerifier.verify(token)`` gives them. To also end the token's login, use ``logout``."""
        scripts = self._bind()
        args = [int(claims["exp"]), self.leeway, self.max_ttl]
        ttl = await self.breaker.call(lambda: scripts["revoke"](keys=[self.blacklist_key(claims)], args=args))
        return int(ttl)

    async def logout(self, claims: Claims) -> int:
        """Revoke this token and end its login (``sid``, when the blacklist has ``sessions``) in one
        atomic step; repeating it changes nothing. Returns the revocation's TTL (see ``revoke``)."""
        if self.sessions is None:
            return await self.revoke(claims)
        return await self.sessions.end_and_revoke(
            claims["sub"],
            claims.get("sid"),
            blacklist_key=self.blacklist_key(claims),
            exp=claims["exp"],
            leeway=self.leeway,
            max_ttl=self.max_ttl,
        )

    async def revoke_all(self, user_id: str) -> None:
        """Every token of ``user_id`` a verifier would accept now stops passing (one key per user):
        those issued up to now, and those whose ``iat`` is ahead of now by at most the leeway (an
        issuer whose clock runs ahead). A token such an issuer mints within the leeway after this
        call is refused too, until its ``iat`` passes the mark."""
        scripts = self._bind()
        keys = [self.keys.user("logout_all", user_id), self.keys.user("session", user_id)]
        await self.breaker.call(lambda: scripts["revoke_all"](keys=keys, args=[self.max_ttl, self.leeway]))

    async def ensure_epoch(self) -> int:
        """``DataLossEpoch.ensure`` for this blacklist's Redis (the app calls it at start-up)."""
        return await self.epoch.ensure()

    def _bind(self) -> dict[str, Any]:
        return self._scripts.bind(require_client(self.redis), self.breaker.events)

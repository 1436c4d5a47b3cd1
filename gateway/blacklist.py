"""``TokenBlacklist``: revocation of JWTs in Redis, checked in one round trip per request.

A token is refused when its ``jti`` is blacklisted (``blacklist:{user_id}:{jti}``, kept until no
verifier would accept the token any more: its ``exp`` plus the leeway; never the raw token), when
its login session has ended or lapsed (``session:{user_id}``, for tokens that carry a ``sid``), when
the user logged out everywhere after it was issued (``logout_all:{user_id}``), or when it was issued
before Redis lost its data (``epoch``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.keys import Keys, escape
from gateway.scripts import ScriptSet
from gateway.sessions import SessionTiming
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
    ``sessions`` makes tokens with a ``sid`` valid only while their login lives (``session_ttl``
    seconds after its last use, see ``SessionStore``)."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        keys: Keys | None = None,
        leeway: int = 30,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
        sessions: bool = True,
        session_ttl: int = 86400,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.sessions = sessions
        self.timing = SessionTiming.of(session_ttl)
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("auth_check", "revoke", "revoke_all", "epoch_init")

    def check_keys(self, claims: Claims) -> list[str]:
        """The keys the revocation check reads, in ``check_token``'s order."""
        user = claims["sub"]
        return [
            self.keys.blacklist(user, claims["jti"]),
            self.keys.user("session", user),
            self.keys.user("logout_all", user),
            self.keys.epoch(user),
        ]

    @property
    def max_ttl(self) -> int:
        """The longest a revocation or a log-out mark is kept, seconds."""
        return self.max_lifetime + self.leeway

    def check_args(self, claims: Claims) -> list[Any]:
        sid = escape(claims.get("sid", "")) if self.sessions else ""
        # On a cluster the epoch is per user and written at login, so it cannot tell a new user from
        # lost data: it is not checked (sessions still die with their hash; see the README).
        timing = self.timing
        return [sid, int(claims["iat"]), timing.touch_ms, timing.idle_ms, 0 if self.keys.cluster else 1]

    async def verdict(self, claims: Claims) -> Verdict:
        """One round trip. Raises ``RedisUnavailable`` when Redis cannot answer."""
        scripts = self._bind()
        code = await self.breaker.call(
            lambda: scripts["auth_check"](keys=self.check_keys(claims), args=self.check_args(claims))
        )
        return Verdict(int(code))

    async def is_revoked(self, claims: Claims) -> bool:
        return await self.verdict(claims) is not Verdict.VALID

    def blacklist_key(self, claims: Claims) -> str:
        return self.keys.blacklist(claims["sub"], claims["jti"])

    async def revoke(self, claims: Claims) -> int:
        """Blacklist this token's ``jti`` until no verifier would accept it (``exp`` + leeway);
        returns the TTL set (0 when it is already past that)."""
        scripts = self._bind()
        ttl = await self.breaker.call(
            lambda: scripts["revoke"](
                keys=[self.blacklist_key(claims)], args=[int(claims["exp"]), self.leeway, self.max_ttl]
            )
        )
        return int(ttl)

    async def revoke_all(self, user_id: str) -> None:
        """Every token of ``user_id`` issued up to now stops passing (one key per user)."""
        scripts = self._bind()
        await self.breaker.call(
            lambda: scripts["revoke_all"](
                keys=[self.keys.user("logout_all", user_id), self.keys.user("session", user_id)], args=[self.max_ttl]
            )
        )

    async def ensure_epoch(self) -> int:
        """Record when this Redis's data began, once, at server time; the app calls it at start-up
        so tokens issued from then on pass. Returns the epoch in force (0 on a cluster)."""
        if self.keys.cluster:
            return 0
        scripts = self._bind()
        epoch = await self.breaker.call(lambda: scripts["epoch_init"](keys=[self.keys.epoch("")]))
        return int(epoch)

    def _bind(self) -> dict[str, Any]:
        return self._scripts.bind(require_client(self.redis))

"""``TokenBlacklist``: revocation of JWTs in Redis, checked in one round trip per request.

A token is refused when its ``jti`` is blacklisted (``blacklist:{jti}``, kept for the token's
remaining lifetime, never the raw token), when its login session has ended (``session:{user_id}``,
for tokens that carry a ``sid``), when the user logged out everywhere after it was issued
(``logout_all:{user_id}``), or when it was issued before Redis lost its data (``epoch``).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.keys import Keys
from gateway.scripts import ScriptSet
from gateway.tokens import Claims
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
    """Revocation store. ``max_ttl`` bounds how long a revocation is kept (the longest token life);
    ``sessions`` makes tokens with a ``sid`` valid only while their login session exists."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        keys: Keys | None = None,
        max_ttl: int = 86400,
        sessions: bool = True,
        session_ttl: int = 86400,
        touch_every: int = 60,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.max_ttl = max_ttl
        self.sessions = sessions
        self.session_ttl = session_ttl
        self.touch_every = touch_every
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

    def check_args(self, claims: Claims) -> list[Any]:
        sid = claims.get("sid", "") if self.sessions else ""
        # On a cluster the epoch is per user and written at login, so it cannot tell a new user from
        # lost data: it is not checked (sessions still die with their hash; see the README).
        return [sid, int(claims["iat"]), self.touch_every, self.session_ttl, 0 if self.keys.cluster else 1]

    async def verdict(self, claims: Claims) -> Verdict:
        """One round trip. Raises ``RedisUnavailable`` when Redis cannot answer."""
        scripts = self._bind()
        code = await self.breaker.call(
            lambda: scripts["auth_check"](keys=self.check_keys(claims), args=self.check_args(claims))
        )
        return Verdict(int(code))

    async def is_revoked(self, claims: Claims) -> bool:
        return await self.verdict(claims) is not Verdict.VALID

    async def revoke(self, claims: Claims) -> int:
        """Blacklist this token's ``jti`` for its remaining lifetime; returns the TTL set (0 if expired)."""
        scripts = self._bind()
        ttl = await self.breaker.call(
            lambda: scripts["revoke"](
                keys=[self.keys.blacklist(claims["sub"], claims["jti"])], args=[int(claims["exp"]), self.max_ttl]
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

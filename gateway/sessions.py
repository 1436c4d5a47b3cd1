"""``SessionStore``: a user's active logins in one Redis hash, ``session:{user_id}``.

Each login has a session id (``sid``) shared by its access and refresh tokens. Ending a session
makes every token of that login fail the revocation check; refresh tokens rotate, and a rotated one
presented again ends the login (reuse detection).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple

import orjson

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.keys import Keys
from gateway.scripts import ScriptSet
from gateway.types import RedisSource


class Session(NamedTuple):
    session_id: str
    created_at: float  # Unix seconds, server time
    last_seen: int
    ip: str
    user_agent: str


class Rotation(IntEnum):
    ROTATED = 0
    NO_SESSION = 1
    REUSED = 2


class SessionStore:
    """Sessions live ``ttl`` seconds after the last login or activity (``SESSION_TTL``)."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        keys: Keys | None = None,
        ttl: int = 86400,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.ttl = ttl
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("session_open", "session_rotate")

    def key(self, user_id: str) -> str:
        return self.keys.user("session", user_id)

    async def open(self, user_id: str, session_id: str, *, refresh_jti: str, ip: str, user_agent: str) -> None:
        """Record a login; also prunes the user's sessions that have been idle past the TTL."""
        scripts = self._scripts.bind(require_client(self.redis))
        data = orjson.dumps({"ip": ip[:64], "ua": user_agent[:256], "refresh": refresh_jti})
        await self.breaker.call(
            lambda: scripts["session_open"](
                keys=[self.key(user_id), self.keys.epoch(user_id)],
                args=[session_id, data, self.ttl, 0 if self.keys.cluster else 1],
            )
        )

    async def load(self, user_id: str) -> list[Session]:
        """The user's active sessions, oldest first."""
        client = require_client(self.redis)
        fields: dict[Any, Any] = await self.breaker.call(lambda: client.hgetall(self.key(user_id)))
        sessions = []
        for name, raw in fields.items():
            if name.endswith(b":seen") or name.startswith(b"!"):
                continue
            data: dict[str, Any] = orjson.loads(raw)
            seen = fields.get(name + b":seen", b"0")
            sessions.append(
                Session(name.decode(), data.get("created", 0) / 1000, int(seen), data.get("ip", ""), data.get("ua", ""))
            )
        return sorted(sessions, key=lambda s: (s.created_at, s.session_id))

    async def end(self, user_id: str, session_id: str) -> bool:
        """End one login; its tokens fail the revocation check from the next request on."""
        client = require_client(self.redis)
        removed = await self.breaker.call(lambda: client.hdel(self.key(user_id), session_id, f"{session_id}:seen"))
        return bool(removed)

    async def rotate(self, user_id: str, session_id: str, *, presented_jti: str, new_jti: str) -> Rotation:
        """Swap the session's refresh token; a stale one presented again ends the session."""
        scripts = self._scripts.bind(require_client(self.redis))
        code = await self.breaker.call(
            lambda: scripts["session_rotate"](
                keys=[self.key(user_id)], args=[session_id, presented_jti, new_jti, self.ttl]
            )
        )
        return Rotation(int(code))

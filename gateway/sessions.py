"""``SessionStore``: a user's logins in one Redis hash, ``session:{user_id}`` (layout in
``lua/session.lua``; this module and those scripts are the only code that reads or writes it).

Each login has a session id (``sid``) shared by its access and refresh tokens. A login ends when it
is ended (logout, ``DELETE /auth/session/{id}``, log out everywhere), when its refresh token is
reused after the grace interval (it was copied), or after ``ttl`` seconds without use, each login on
its own: an idle phone lapses while the same user's laptop stays signed in.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, NamedTuple
from urllib.parse import unquote

import orjson

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.epoch import DataLossEpoch
from gateway.redis_keys import Keys, escape
from gateway.scripts import ScriptSet
from gateway.types import RedisSource

#: Refresh tokens one login keeps alive at once (more only after many grace-interval reissues).
MAX_LIVE_REFRESH = 16


class Session(NamedTuple):
    """One login as :meth:`SessionStore.load` lists it (times are Unix seconds, server time)."""

    session_id: str
    created_at: float
    last_seen: float
    ip: str
    user_agent: str


class Rotation(IntEnum):
    """Outcome of :meth:`SessionStore.rotate` (the Lua script's return code)."""

    ROTATED = 0
    NO_SESSION = 1
    REUSED = 2
    #: The token was rotated within the grace interval: the caller gets a further pair for the login.
    GRACE = 3


class SessionTiming(NamedTuple):
    """How idle expiry is measured, in milliseconds: use is recorded at most every ``touch_ms``, and a
    login lapses once ``idle_ms`` (the TTL plus one touch interval) pass without a recorded use. So a
    login ends between ``ttl`` and ``ttl + touch`` after its last use, and one used at least once per
    ``ttl`` never lapses."""

    touch_ms: int
    idle_ms: int

    @classmethod
    def of(cls, ttl: float) -> SessionTiming:
        """The timing for a session TTL of ``ttl`` seconds: use is recorded at most every tenth of
        the TTL, or every minute for TTLs over ten minutes."""
        ttl_ms = int(ttl * 1000)
        touch_ms = max(1, min(60_000, ttl_ms // 10))
        return cls(touch_ms, ttl_ms + touch_ms)


class SessionStore:
    """Logins live ``ttl`` seconds after their last use (``SESSION_TTL``); ``refresh_grace`` is how
    long a just-rotated refresh token may be presented again (``REFRESH_REUSE_GRACE``; 0 = never).
    ``redis`` is a client or a callable returning it, ``keys`` the key names (a prefix), ``breaker``
    the process's shared ``CircuitBreaker``. Give it to ``TokenBlacklist(sessions=...)`` too, so
    ending a login revokes its tokens."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        keys: Keys | None = None,
        ttl: int = 86400,
        refresh_grace: int = 30,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if ttl < 1 or refresh_grace < 0:
            raise ValueError("ttl must be at least 1 second and refresh_grace at least 0")
        self.redis = redis
        self.keys = keys or Keys()
        self.ttl = ttl
        self.refresh_grace = refresh_grace
        self.timing = SessionTiming.of(ttl)
        self.breaker = breaker or CircuitBreaker()
        self.epoch = DataLossEpoch(redis, keys=self.keys, breaker=self.breaker)
        self._scripts = ScriptSet("session_open", "session_rotate", "session_list", "session_end")

    def key(self, user_id: str) -> str:
        """The Redis key of ``user_id``'s logins: ``session:{user_id}`` (prefixed and escaped)."""
        return self.keys.user("session", user_id)

    @staticmethod
    def field(session_id: str) -> str:
        """The hash field of a login (its sid, escaped: a sid ``x:seen`` cannot pose as another's field)."""
        return escape(session_id)

    async def open(self, user_id: str, session_id: str, *, refresh_jti: str, ip: str, user_agent: str) -> None:
        """Record a login; also removes the user's logins that have lapsed."""
        scripts = self._bind()
        data = orjson.dumps({"ip": ip[:64], "ua": user_agent[:256], "refresh": [refresh_jti], "prev": {}})
        await self.breaker.call(
            lambda: scripts["session_open"](
                keys=[self.key(user_id), self.epoch.key(user_id)],
                args=[self.field(session_id), data, self.timing.idle_ms, 1 if self.epoch.checked else 0],
            )
        )

    async def load(self, user_id: str) -> list[Session]:
        """The user's live logins, oldest first."""
        scripts = self._bind()
        flat: list[Any] = await self.breaker.call(
            lambda: scripts["session_list"](keys=[self.key(user_id)], args=[self.timing.idle_ms])
        )
        sessions = []
        for i in range(0, len(flat), 3):
            data: dict[str, Any] = orjson.loads(flat[i + 1])
            created = data.get("created", 0)
            sessions.append(
                Session(
                    unquote(flat[i].decode()),
                    created / 1000 if created > 100_000_000_000 else float(created),
                    int(flat[i + 2]) / 1000,
                    data.get("ip", ""),
                    data.get("ua", ""),
                )
            )
        return sorted(sessions, key=lambda s: (s.created_at, s.session_id))

    async def end(self, user_id: str, session_id: str) -> bool:
        """End one login; its tokens fail the revocation check from the next request on."""
        ended, _ = await self._end(user_id, session_id)
        return bool(ended)

    async def end_and_revoke(
        self, user_id: str, session_id: str | None, *, blacklist_key: str, exp: float, leeway: int, max_ttl: int
    ) -> int:
        """Log out in one atomic step: blacklist the access token (``blacklist_key`` until ``exp`` +
        ``leeway``, at most ``max_ttl``) and end its login. Repeating it changes nothing. Returns the
        revocation's TTL."""
        _, ttl = await self._end(user_id, session_id, blacklist_key, [int(exp), leeway, max_ttl])
        return ttl

    async def _end(
        self, user_id: str, session_id: str | None, blacklist_key: str | None = None, revoke: list[int] | None = None
    ) -> tuple[int, int]:
        scripts = self._bind()
        keys = [self.key(user_id)] + ([blacklist_key] if blacklist_key else [])
        args = [self.field(session_id) if session_id else "", *(revoke or [0, 0, 0])]
        reply = await self.breaker.call(lambda: scripts["session_end"](keys=keys, args=args))
        return int(reply[0]), int(reply[1])

    async def rotate(self, user_id: str, session_id: str, *, presented_jti: str, new_jti: str) -> Rotation:
        """Swap the login's refresh token for ``new_jti``. A token rotated within the grace interval
        gets a further one (``GRACE``); one rotated before that ends the login (``REUSED``)."""
        scripts = self._bind()
        args = [
            self.field(session_id), presented_jti, new_jti, self.timing.idle_ms, self.timing.touch_ms,
            self.refresh_grace * 1000, MAX_LIVE_REFRESH,
        ]  # fmt: skip
        code = await self.breaker.call(lambda: scripts["session_rotate"](keys=[self.key(user_id)], args=args))
        return Rotation(int(code))

    def check_args(self, session_id: str) -> tuple[str, int, int]:
        """What the revocation check (``lua/revocation.lua``) needs to check and touch a login: its
        field, the touch interval and the idle limit (ms)."""
        return self.field(session_id), self.timing.touch_ms, self.timing.idle_ms

    def _bind(self) -> dict[str, Any]:
        return self._scripts.bind(require_client(self.redis), self.breaker.events)

"""``OtpStore``: one-time sign-in codes in Redis, stored hashed, with expiry and a try limit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import IntEnum

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.redis_keys import Keys
from gateway.scripts import ScriptSet
from gateway.types import RedisSource


class OtpCheck(IntEnum):
    """Outcome of :meth:`OtpStore.verify` (the Lua script's return code)."""

    OK = 0
    NO_CODE = 1
    WRONG = 2
    LOCKED = 3
    #: Too many wrong codes for this phone today: refused even with the right code.
    PHONE_LOCKED = 4


class OtpStore:
    """Codes live ``ttl`` seconds under ``otp:{phone}`` (the phone is the hash tag on a cluster) as an
    HMAC (never the code itself); after ``max_tries`` wrong answers the code is gone and a new one
    must be requested. Wrong answers also count per phone (``otp_failures:{phone}``) for
    ``failure_window`` seconds from the first: after ``max_failures`` the phone is locked out until
    then, so resending codes (each with fresh tries) cannot turn into unlimited guesses."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        secret: bytes,
        keys: Keys | None = None,
        ttl: int = 300,
        max_tries: int = 5,
        max_failures: int = 10,
        failure_window: int = 86400,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not secret:
            raise ValueError("an HMAC secret is required")
        if max_tries < 1 or max_failures < 1 or failure_window < 1:
            raise ValueError("max_tries, max_failures and failure_window must be at least 1")
        self.redis = redis
        self.secret = secret
        self.keys = keys or Keys()
        self.ttl = ttl
        self.max_tries = max_tries
        self.max_failures = max_failures
        self.failure_window = failure_window
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("otp_verify", "otp_locked")

    @staticmethod
    def new_code() -> str:
        """A random six-digit code (from ``secrets``), with leading zeros kept."""
        return f"{secrets.randbelow(1_000_000):06d}"

    def _digest(self, phone: str, code: str) -> str:
        return hmac.new(self.secret, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    async def store(self, phone: str, code: str) -> None:
        """Replace any earlier code for this phone (and its try count)."""
        client = require_client(self.redis)
        key = self.keys.owned("otp", phone)

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping={"hash": self._digest(phone, code), "tries": 0})
                pipe.expire(key, self.ttl)
                await pipe.execute()

        await self.breaker.call(write)

    async def verify(self, phone: str, code: str) -> tuple[OtpCheck, int]:
        """The outcome and a number: the tries left for ``WRONG``, the seconds until the phone's
        lock lifts for ``PHONE_LOCKED``. A correct code is consumed."""
        scripts = self._scripts.bind(require_client(self.redis), self.breaker.events)
        keys = [self.keys.owned("otp", phone), self.keys.owned("otp_failures", phone)]
        args = [self._digest(phone, code), self.max_tries, self.max_failures, self.failure_window]
        result = await self.breaker.call(lambda: scripts["otp_verify"](keys=keys, args=args))
        return OtpCheck(int(result[0])), int(result[1])

    async def locked_for(self, phone: str) -> int:
        """Seconds until this phone may try codes again (0: it may now)."""
        scripts = self._scripts.bind(require_client(self.redis), self.breaker.events)
        result = await self.breaker.call(
            lambda: scripts["otp_locked"](keys=[self.keys.owned("otp_failures", phone)], args=[self.max_failures])
        )
        return int(result)

"""``OtpStore``: one-time sign-in codes in Redis, stored hashed, with expiry and a try limit."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import IntEnum

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.keys import Keys
from gateway.scripts import ScriptSet
from gateway.types import RedisSource


class OtpCheck(IntEnum):
    """Outcome of :meth:`OtpStore.verify` (the Lua script's return code)."""

    OK = 0
    NO_CODE = 1
    WRONG = 2
    LOCKED = 3


class OtpStore:
    """Codes live ``ttl`` seconds under ``otp:{phone}`` as an HMAC (never the code itself); after
    ``max_tries`` wrong answers the code is gone and a new one must be requested."""

    def __init__(
        self,
        redis: RedisSource,
        *,
        secret: bytes,
        keys: Keys | None = None,
        ttl: int = 300,
        max_tries: int = 5,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not secret:
            raise ValueError("an HMAC secret is required")
        self.redis = redis
        self.secret = secret
        self.keys = keys or Keys()
        self.ttl = ttl
        self.max_tries = max_tries
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("otp_verify")

    @staticmethod
    def new_code() -> str:
        return f"{secrets.randbelow(1_000_000):06d}"

    def _digest(self, phone: str, code: str) -> str:
        return hmac.new(self.secret, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    async def store(self, phone: str, code: str) -> None:
        """Replace any earlier code for this phone (and its try count)."""
        client = require_client(self.redis)
        key = self.keys(f"otp:{phone}")

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping={"hash": self._digest(phone, code), "tries": 0})
                pipe.expire(key, self.ttl)
                await pipe.execute()

        await self.breaker.call(write)

    async def verify(self, phone: str, code: str) -> tuple[OtpCheck, int]:
        """The outcome and the tries left; a correct code is consumed."""
        scripts = self._scripts.bind(require_client(self.redis))
        result = await self.breaker.call(
            lambda: scripts["otp_verify"](
                keys=[self.keys(f"otp:{phone}")], args=[self._digest(phone, code), self.max_tries]
            )
        )
        return OtpCheck(int(result[0])), int(result[1])

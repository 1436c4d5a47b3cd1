"""Phone sign-in's logic over the gateway's parts: which numbers are accepted, the per-number and
global limits on codes, opening a login. No HTTP here: the handlers are ``service.auth``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import phonenumbers
from databases import Database

from gateway import Keys, Policy, RateLimiter, RedisUnavailable, SessionStore, TokenIssuer
from gateway.ratelimit import Decision, Limit, LocalLimiter
from gateway.tokens import TokenPair, new_id
from service.users import UserStore

#: The per-number limit on code requests (the number is in the body: the gateway cannot see it).
OTP_PER_PHONE = Policy.of("otp-phone", "5/hour")


def normalise_phone(raw: str, region: str = "TR") -> str | None:
    """E.164 (``+905551234567``), or None when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def accepted_phone(raw: str, test_numbers: Mapping[str, str]) -> str | None:
    """E.164, or the number exactly as listed in ``OTP_TEST_NUMBERS``, or None."""
    return normalise_phone(raw) or (raw if raw in test_numbers else None)


class SignIn:
    """Phone sign-in's logic over the gateway's parts: codes, their limits, logins."""

    def __init__(
        self,
        *,
        issuer: TokenIssuer,
        sessions: SessionStore,
        limiter: RateLimiter,
        keys: Keys,
        database: Callable[[], Database],
        send_budget: tuple[Limit, ...],
    ) -> None:
        self.issuer = issuer
        self.sessions = sessions
        self.limiter = limiter
        self.keys = keys
        self.database = database
        self.send_budget = Policy("otp-send-budget", send_budget)

    @property
    def users(self) -> UserStore:
        return UserStore(self.database())

    async def open_session(self, user_id: str, *, ip: str, user_agent: str) -> TokenPair:
        """A new login: a session id, a token pair sharing it, and the session recorded in Redis."""
        session_id = new_id()
        pair = self.issuer.issue_pair(user_id, session_id=session_id)
        await self.sessions.open(user_id, session_id, refresh_jti=pair.refresh["jti"], ip=ip, user_agent=user_agent)
        return pair

    async def limit_phone(self, phone: str) -> Decision:
        """``POST /auth/otp``'s per-number limit (``OTP_PER_PHONE``): refused once a number has asked
        for 5 codes in an hour."""
        key = self.keys.owned("rate_limit", self.keys.client("phone", phone), "POST /auth/otp")
        return await self._hit(key, OTP_PER_PHONE)

    async def spend_send_budget(self) -> bool:
        """One code from the global budget (``OTP_SEND_BUDGET``, all numbers together): False once it
        is spent, which is how SMS pumping shows itself."""
        return (await self._hit(self.keys("rate_limit:otp_send_budget"), self.send_budget)).admitted

    async def _hit(self, key: str, policy: Policy) -> Decision:
        try:
            return await self.limiter.hit(key, policy.limits)
        except RedisUnavailable:  # without Redis, this process counts alone
            return self._local.hit(key, policy.limits)

    @functools.cached_property
    def _local(self) -> LocalLimiter:
        return LocalLimiter()

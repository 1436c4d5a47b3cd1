"""Where one-time codes go. The default writes them to the log (never in production); plug in an SMS
gateway by giving ``create_app`` any object with ``async send(phone, code)``."""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger("service.otp")


class OtpSender(Protocol):
    async def send(self, phone: str, code: str) -> None: ...


def mask(phone: str) -> str:
    return phone[:4] + "*" * max(len(phone) - 6, 0) + phone[-2:]


class LogOtpSender:
    """Development sender: logs the code so you can sign in without an SMS gateway. In production
    it logs only that a code was sent."""

    def __init__(self, *, reveal_code: bool) -> None:
        self.reveal_code = reveal_code

    async def send(self, phone: str, code: str) -> None:
        if self.reveal_code:
            logger.warning("one-time code for %s: %s (development: codes are logged, not sent)", mask(phone), code)
        else:
            logger.info("one-time code sent to %s", mask(phone))

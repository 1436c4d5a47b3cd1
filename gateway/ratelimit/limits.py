"""The rate limiter's values: ``Limit`` and its expressions (``"100/hour"``, ``"5/2second"``,
``"10/second;100/hour"``), and what a hit decides (``LimitState``, ``Decision``). Imports nothing from
the gateway, so any module may name these types."""

from __future__ import annotations

import re
from typing import NamedTuple

_UNITS = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}  # fmt: skip
_ITEM = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d*)\s*([a-z]+)\s*$")


class Limit(NamedTuple):
    """``amount`` requests per ``window`` seconds."""

    amount: int
    window: int

    def __str__(self) -> str:
        return f"{self.amount}/{self.window}second" if self.window != 1 else f"{self.amount}/second"


def parse_limits(text: str) -> tuple[Limit, ...]:
    """Parse ``"10/second;100/hour"`` into limits; ``ValueError`` names what is wrong."""
    limits: list[Limit] = []
    for part in re.split(r"[;,]", text):
        if not part.strip():
            continue
        match = _ITEM.match(part.lower())
        if match is None or match.group(3) not in _UNITS:
            raise ValueError(f"{part.strip()!r} is not a rate limit like '100/hour' or '5/2second'")
        amount, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
        if amount < 1 or multiple < 1:
            raise ValueError(f"{part.strip()!r}: amount and window must be at least 1")
        limits.append(Limit(amount, multiple * _UNITS[unit]))
    if not limits:
        raise ValueError("no rate limit given")
    return tuple(limits)


class LimitState(NamedTuple):
    """One limit after a hit: requests ``remaining`` in its window, and ``reset`` whole seconds (≥ 1)
    until a slot frees up (for an exhausted limit: until a request could pass)."""

    limit: Limit
    remaining: int
    reset: int


class Decision(NamedTuple):
    """Whether a request was admitted, and the state of each of its policy's limits after it."""

    admitted: bool
    states: tuple[LimitState, ...]

    @property
    def retry_after(self) -> int:
        """Seconds until every exhausted limit lets a request through again."""
        return max((s.reset for s in self.states if s.remaining == 0), default=1)

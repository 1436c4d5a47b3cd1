"""Rate-limit expressions."""

from __future__ import annotations

import pytest

from gateway.ratelimit import Limit, parse_limits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/hour", (Limit(100, 3600),)),
        ("5/minute", (Limit(5, 60),)),
        ("10/second", (Limit(10, 1),)),
        ("5/2second", (Limit(5, 2),)),
        ("10/second;100/hour", (Limit(10, 1), Limit(100, 3600))),
        ("1000 per day", (Limit(1000, 86400),)),
        (" 3 / 15 minutes ", (Limit(3, 900),)),
    ],
)
def test_parse(text: str, expected: tuple[Limit, ...]) -> None:
    assert parse_limits(text) == expected


@pytest.mark.parametrize("text", ["abc", "", "0/hour", "10/fortnight", "10", "/hour", "10/0second"])
def test_reject(text: str) -> None:
    with pytest.raises(ValueError):
        parse_limits(text)

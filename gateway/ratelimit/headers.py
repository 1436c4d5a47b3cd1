"""Rate-limit response headers (draft-ietf-httpapi-ratelimit-headers, and the older trio) and the 429
problem response, built from a policy and a decision."""

from __future__ import annotations

import functools
from typing import Any

from starlette.datastructures import MutableHeaders

from gateway.problem import ProblemResponse
from gateway.ratelimit.limits import Decision
from gateway.ratelimit.policy import Policy

#: The problem ``type`` of a 429 (the IANA-registered problem type of the rate-limit headers draft).
QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
_TRIO = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def _quote(name: str) -> str:
    return name.replace("\\", "").replace('"', "")


@functools.cache
def _policy_field(policy: Policy) -> tuple[str, tuple[str, ...]]:
    """The static parts of a policy's headers, built once per policy."""
    names = tuple(_quote(n) for n in policy.item_names())
    value = ", ".join(f'"{n}";q={limit.amount};w={limit.window}' for n, limit in zip(names, policy.limits, strict=True))
    return value, names


def rate_limit_headers(policy: Policy, decision: Decision) -> list[tuple[str, str]]:
    """``RateLimit-Policy``, ``RateLimit`` and the trio (the tightest limit), plus ``Retry-After`` when refused."""
    policy_value, names = _policy_field(policy)
    states = decision.states
    if len(states) == 1:
        tightest = states[0]
        current = f'"{names[0]}";r={tightest.remaining};t={tightest.reset}'
    else:
        tightest = min(states, key=lambda s: (s.remaining, -s.reset))
        current = ", ".join(f'"{n}";r={s.remaining};t={s.reset}' for n, s in zip(names, states, strict=True))
    headers = [
        ("RateLimit-Policy", policy_value),
        ("RateLimit", current),
        ("RateLimit-Limit", str(tightest.limit.amount)),
        ("RateLimit-Remaining", str(tightest.remaining)),
        ("RateLimit-Reset", str(tightest.reset)),
    ]
    if not decision.admitted:
        headers.append(("Retry-After", str(decision.retry_after)))
    return headers


#: The ASGI (lower-case, bytes) form of each header name ``rate_limit_headers`` gives.
_RAW_NAMES = {
    name: name.lower().encode()
    for name in ("RateLimit-Policy", "RateLimit", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
                 "Retry-After")
}  # fmt: skip


def raw_rate_limit_headers(policy: Policy, decision: Decision) -> list[tuple[bytes, bytes]]:
    """``rate_limit_headers`` as ASGI header pairs (lower-case names, bytes)."""
    return [(_RAW_NAMES[name], value.encode()) for name, value in rate_limit_headers(policy, decision)]


def add_rate_limit_headers(response: MutableHeaders, headers: list[tuple[str, str]]) -> None:
    """Add our headers to a response. If the app already limited it under another policy (say, per
    phone number), both policies are listed, and the single-valued trio keeps the tighter one."""
    values = dict(headers)
    existing = response.get("ratelimit-remaining")
    ours_tighter = existing is None or (existing.isdigit() and int(values["RateLimit-Remaining"]) < int(existing))
    for name, value in headers:
        if name in _TRIO:
            if ours_tighter:
                response[name] = value
        elif name in response and name != "Retry-After":
            response[name] = f"{response[name]}, {value}"
        else:
            response[name] = value


def too_many_requests(policy: Policy, decision: Decision) -> ProblemResponse:
    """The 429: a ``quota-exceeded`` problem naming the violated limits, with every header."""
    names = policy.item_names()
    violated = [name for name, state in zip(names, decision.states, strict=True) if state.remaining == 0]
    extra: dict[str, Any] = {"violated-policies": violated}
    return ProblemResponse(
        429,
        f"Rate limit exceeded; retry in {decision.retry_after} s.",
        title="Too Many Requests",
        type=QUOTA_EXCEEDED,
        headers=dict(rate_limit_headers(policy, decision)),
        **extra,
    )

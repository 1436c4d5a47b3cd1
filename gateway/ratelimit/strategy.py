"""The algorithm: ``RateLimiter`` (exact, shared by every process through Redis; its Lua is
``lua/ratelimit.lua``) and ``LocalLimiter`` (the same algorithm in process memory, the approximate
per-worker fallback while Redis is away).

The algorithm is a sliding log: a sorted set of the admitted requests' server times. It is the only
common algorithm that never admits more than the limit in *any* window of the limit's length (fixed
windows admit up to twice the limit across a boundary; the sliding-window counter approximates;
GCRA and token buckets admit a full burst and then the steady rate, up to about twice the limit in
one window). Its cost is one sorted-set entry per admitted request, bounded by the limit.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Any, NamedTuple

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.ratelimit.parse import Limit
from gateway.scripts import ScriptSet, nonce
from gateway.types import RedisSource


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


def limit_args(limits: Sequence[Limit]) -> list[Any]:
    """The script arguments of one hit (``lua/ratelimit.lua``'s ``rate_limit``): a nonce, then each limit."""
    args: list[Any] = [nonce()]
    for limit in limits:
        args += [limit.amount, limit.window * 1000]
    return args


def decision_of(reply: Sequence[Any], limits: Sequence[Limit]) -> Decision:
    """``rate_limit``'s reply as a ``Decision``."""
    states = tuple(
        LimitState(limit, int(reply[1 + 2 * i]), max(1, math.ceil(int(reply[2 + 2 * i]) / 1000)))
        for i, limit in enumerate(limits)
    )
    return Decision(bool(int(reply[0])), states)


class RateLimiter:
    """Counting and deciding in one atomic Lua script on Redis server time: exact across processes
    and hosts, one round trip per request."""

    def __init__(self, redis: RedisSource, *, breaker: CircuitBreaker | None = None) -> None:
        self.redis = redis
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("rate_limit")

    async def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        """Count one request under ``key``. Raises ``RedisUnavailable`` when Redis cannot answer."""
        scripts = self._scripts.bind(require_client(self.redis), self.breaker.events)
        args = limit_args(limits)
        reply = await self.breaker.call(lambda: scripts["rate_limit"](keys=[key], args=args))
        return decision_of(reply, limits)


class LocalLimiter:
    """The same sliding log in this process's memory: approximate (each worker counts alone), for
    while Redis is unreachable. Keeps at most ``max_keys`` keys, dropping the least recently used."""

    def __init__(self, *, max_keys: int = 10_000) -> None:
        self.max_keys = max_keys
        self._logs: OrderedDict[str, deque[float]] = OrderedDict()

    def hit(self, key: str, limits: Sequence[Limit]) -> Decision:
        now = time.monotonic()
        log = self._logs.get(key)
        if log is None:
            log = self._logs[key] = deque()
            if len(self._logs) > self.max_keys:
                self._logs.popitem(last=False)
        else:
            self._logs.move_to_end(key)
        longest = max(limit.window for limit in limits)
        while log and log[0] <= now - longest:
            log.popleft()
        counts = [sum(1 for t in log if t > now - limit.window) for limit in limits]
        admitted = all(count < limit.amount for count, limit in zip(counts, limits, strict=True))
        if admitted:
            log.append(now)
        states = []
        for count, limit in zip(counts, limits, strict=True):
            used = count + admitted
            in_window = [t for t in log if t > now - limit.window]
            reset = float(limit.window)
            if in_window:
                reset = in_window[min(max(used - limit.amount, 0), len(in_window) - 1)] + limit.window - now
            states.append(LimitState(limit, max(limit.amount - used, 0), max(1, math.ceil(reset))))
        return Decision(admitted, tuple(states))

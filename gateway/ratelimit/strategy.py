"""The algorithm: ``RateLimiter`` (exact, shared by every process through Redis; its Lua is
``lua/ratelimit.lua``) and ``LocalLimiter`` (the same algorithm in process memory, the approximate
per-worker fallback while Redis is away).

The algorithm is a sliding window of sub-window counters (``BUCKETS`` per window), counted
conservatively: a request is admitted only if the counters of every sub-window that overlaps the
last window, the oldest one *whole*, plus its cost, stay within the limit. Its guarantee, for every
limit of ``A`` units per ``W`` seconds, whatever the traffic and however many processes and hosts:

- **never more than ``A`` admitted units in any span of ``W`` seconds**, anywhere in time (no fixed
  window's 2x burst at a boundary; GCRA and token buckets with a burst of ``A`` allow about 2A in one
  window);
- a unit frees at most ``W / BUCKETS`` later than in an exact sliding log (3 minutes for an hourly
  limit); refused requests consume nothing;
- state is one string of ``16 + 4 * (BUCKETS + 1)`` bytes per limit (100 bytes), and each hit does a
  constant amount of work, whatever the limit and the traffic (the sliding log it replaces kept one
  sorted-set entry per admitted request: 238 KB after 2,000 requests).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.ratelimit.limits import Decision, Limit, LimitState
from gateway.scripts import ScriptSet
from gateway.types import RedisSource

#: Sub-windows per window: a unit frees at most window / BUCKETS late; state grows 4 bytes per sub-window.
BUCKETS = 20


def limit_args(limits: Sequence[Limit], cost: int = 1, want: int = 0) -> list[Any]:
    """The script arguments of one hit (``lua/ratelimit.lua``'s ``rate_limit``): the cost, the units to
    take (``want``, reservations included; at least the cost), the number of sub-windows, then each
    limit."""
    args: list[Any] = [cost, max(want, cost), BUCKETS]
    for limit in limits:
        args += [limit.amount, limit.window * 1000]
    return args


def _state(limit: Limit, remaining: Any, reset_ms: Any) -> LimitState:
    return LimitState(limit, int(remaining), max(1, math.ceil(int(reset_ms) / 1000)))


def decision_of(reply: Sequence[Any], limits: Sequence[Limit]) -> Decision:
    """``rate_limit``'s reply as a ``Decision``."""
    if len(limits) == 1:  # the common case, without the generator
        return Decision(bool(int(reply[0])), (_state(limits[0], reply[1], reply[2]),))
    states = tuple(_state(limit, reply[1 + 2 * i], reply[2 + 2 * i]) for i, limit in enumerate(limits))
    return Decision(bool(int(reply[0])), states)


def reservation_of(reply: Sequence[Any], limits: Sequence[Limit]) -> tuple[Decision, int, int]:
    """``rate_limit``'s reply as the ``Decision``, the units granted and the milliseconds they last."""
    end = 1 + 2 * len(limits)
    return decision_of(reply, limits), int(reply[end]), int(reply[end + 1])


class RateLimiter:
    """Counting and deciding in one atomic Lua script on Redis server time: exact across processes
    and hosts, one round trip per request. ``redis`` is a client or a callable returning it;
    ``breaker`` is the process's shared ``CircuitBreaker``."""

    def __init__(self, redis: RedisSource, *, breaker: CircuitBreaker | None = None) -> None:
        self.redis = redis
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("rate_limit")

    async def hit(self, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Count one request of ``cost`` units under ``key``. Raises ``RedisUnavailable`` when Redis
        cannot answer."""
        return (await self.reserve(key, limits, cost, cost))[0]

    async def reserve(self, key: str, limits: Sequence[Limit], cost: int, want: int) -> tuple[Decision, int, int]:
        """``hit``, taking up to ``want`` units if the request is admitted (``gateway.ratelimit.reservations``):
        the decision, the units taken (``cost`` of them this request's) and the milliseconds they may
        be spent in."""
        scripts = self._scripts.bind(require_client(self.redis), self.breaker.events)
        args = limit_args(limits, cost, want)
        reply = await self.breaker.call(lambda: scripts["rate_limit"](keys=[key], args=args))
        return reservation_of(reply, limits)


class LocalLimiter:
    """The same algorithm in this process's memory: approximate (each worker counts alone), for while
    Redis is unreachable. Keeps at most ``max_keys`` keys, dropping the least recently used."""

    def __init__(self, *, max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_keys = max_keys
        #: Seconds; injectable so tests need not wait for windows to slide.
        self.clock = clock
        self._windows: OrderedDict[str, dict[int, tuple[int, list[int]]]] = OrderedDict()

    def hit(self, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """Count one request of ``cost`` units under ``key`` against ``limits`` in this process and
        return the ``Decision``, as ``RateLimiter.hit`` does with Redis (never raises for Redis)."""
        now_ms = int(self.clock() * 1000)
        stored = self._windows.get(key)
        if stored is None:
            stored = self._windows[key] = {}
            if len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(key)
        shifted = []
        for limit in limits:
            window = limit.window * 1000
            width = max(1, window // BUCKETS)
            base = now_ms // width - BUCKETS
            old_base, old_counts = stored.get(window, (base, [0] * (BUCKETS + 1)))
            shift = base - old_base
            counts = [old_counts[j + shift] if 0 <= j + shift <= BUCKETS else 0 for j in range(BUCKETS + 1)]
            shifted.append((limit, window, width, base, counts))
        admitted = all(sum(counts) + cost <= limit.amount for limit, _, _, _, counts in shifted)
        states = []
        for limit, window, width, base, counts in shifted:
            if admitted:
                counts[BUCKETS] += cost
                stored[window] = (base, counts)
            used = sum(counts)
            need = used - limit.amount + (0 if admitted else cost)
            reset, freed = float(window), 0
            for j, count in enumerate(counts):
                freed += count
                if (need <= 0 and count > 0) or (need > 0 and freed >= need):
                    reset = (base + j + BUCKETS + 1) * width - now_ms
                    break
            states.append(LimitState(limit, max(limit.amount - used, 0), max(1, math.ceil(reset / 1000))))
        return Decision(admitted, tuple(states))

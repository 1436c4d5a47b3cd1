"""``Reservations``: budget a process takes from Redis ahead of need, and refusals it remembers, so a
caller spending fast within a large limit costs Redis one round trip per many requests.

What holds, whatever the number of processes and hosts and their timing:

- **Never over-admitted.** A round trip takes up to *k* units at once (``lua/ratelimit.lua``): they
  count as admitted in Redis when taken, in the current sub-window, so what every process has spent
  plus what they hold never exceeds any limit. A unit held here is spent only before the end of the
  sub-window it was counted in (spent later, it would leave the sliding window before the request it
  admitted): the reply says how long that is, measured from when the request was *sent*, so network
  time only shortens it.
- **What it can cost: under-admission.** Units not spent before their sub-window ends lapse (they
  stay counted until the window slides past them): at most *k* - 1 per process and key each time a
  caller slows down, and *k* is at most ``1 / share`` of the smallest limit (1 %, by default) and at
  most ``max_want``. Meanwhile other processes see those units as taken and may refuse that caller a
  little early.
- ***k* adapts.** It starts at 1 (exactly the one-trip behaviour), doubles each time a reservation is
  used up before it lapses, halves when one lapses unspent, and stays 1 for a limit smaller than
  ``share`` units (a 100/hour caller is counted in Redis request by request) or when little of the
  limit is left (at most an eighth of what remains). A request that finds fewer than *k* / 2 units
  left goes to Redis for the next *k* while the others spend the rest, so a steady caller never runs
  dry; one trip per key at a time reserves, the others take only their cost.
- **Refusals are remembered** for ``refusal_memory`` seconds (1 by default) or until the wait they
  announced is over, whichever comes first: a client hammering after a 429 costs Redis one round trip
  per second. A request of at least the refused cost is refused here with the same headers, its
  ``reset`` counted down. Refused requests consume nothing, here or in Redis. (Not until the whole
  wait: an operator who deletes a caller's rate-limit key is obeyed within a second.)
- **Headers say what this process knows**: a locally admitted request reports the remaining units
  Redis returned when the reservation was taken plus the units still held here. The truth can be
  lower (other processes spent since) or higher (units freed as the window slid); it is exact again
  at the next round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.events import NO_EVENTS, GatewayEvents
from gateway.ratelimit.limits import Decision, Limit, LimitState
from gateway.ratelimit.strategy import RateLimiter

#: Seconds after which a reserving trip that never came back (failed, cancelled) no longer holds the
#: key's turn to reserve.
_TRIP_TIMEOUT = 5.0


@dataclass(slots=True)
class _Held:
    limits: tuple[Limit, ...]
    units: int  # still to spend
    until: float  # the clock's time when the sub-window they were counted in ends
    remaining: tuple[int, ...]  # what Redis said was left, per limit, after they were taken
    reset_at: tuple[float, ...]  # when each limit's reset (as Redis said) falls, on the clock


@dataclass(slots=True)
class _Refused:
    limits: tuple[Limit, ...]
    cost: int
    until: float
    reset_at: tuple[float, ...]


class Reservations:
    """Per-process reservations and remembered refusals for ``RateLimiter`` keys (see the module
    docstring). ``max_want`` bounds *k*; ``share``: *k* is at most a ``1/share`` part of the smallest
    limit; ``refusal_memory`` is how long, at most, a refusal Redis gave is repeated without asking
    again (seconds); ``max_keys`` bounds the keys remembered (oldest out); ``clock`` is monotonic seconds;
    ``events`` hears ``reservation_event`` (``taken``, ``local``, ``lapsed``, ``refused_locally``)."""

    def __init__(
        self,
        *,
        max_want: int = 512,
        share: int = 100,
        refusal_memory: float = 1.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        events: GatewayEvents | None = None,
    ) -> None:
        if max_want < 1 or share < 1 or max_keys < 1:
            raise ValueError("max_want, share and max_keys must be at least 1")
        self.max_want = max_want
        self.share = share
        self.refusal_memory = refusal_memory
        self.max_keys = max_keys
        self.clock = clock
        self.events = events or NO_EVENTS
        self._held: dict[str, _Held] = {}
        self._refused: dict[str, _Refused] = {}
        self._k: dict[str, int] = {}
        self._reserving: dict[str, float] = {}  # key -> when its reserving trip was sent

    async def hit(self, limiter: RateLimiter, key: str, limits: Sequence[Limit], cost: int = 1) -> Decision:
        """``RateLimiter.hit`` through this process's reservations: decided here when it can be (budget
        held, or a refusal in force), else one round trip that may take budget ahead. Raises
        ``RedisUnavailable`` when Redis is needed and cannot answer."""
        decision = self.take(key, limits, cost) or self.refused(key, limits, cost)
        if decision is not None:
            return decision
        sent = self.clock()
        want = self.want(key, limits, cost)
        return self.record(key, limits, cost, want, await limiter.reserve(key, limits, cost, want), sent)

    def take(self, key: str, limits: Sequence[Limit], cost: int) -> Decision | None:
        """Admit a request of ``cost`` from what this process holds for ``key`` (no Redis), or
        ``None``: ask Redis (nothing held, too little, or its sub-window is over)."""
        held = self._held.get(key)
        if held is None:
            return None
        now = self.clock()
        if now >= held.until or held.limits != tuple(limits):
            self._lapse(key, held)
            return None
        if held.units < cost:
            return None
        if held.units - cost < self._k.get(key, 1) // 2 and not self._trip_out(key, now):
            # Running low: this request goes to Redis and takes the next k while the others spend what
            # is left, so a steady caller never finds the budget empty (and never sends every request
            # of one event-loop turn to Redis at once).
            return None
        held.units -= cost
        units = held.units
        states = tuple(
            LimitState(limit, remaining + units, max(1, math.ceil(reset_at - now)))
            for limit, remaining, reset_at in zip(held.limits, held.remaining, held.reset_at, strict=True)
        )
        self.events.reservation_event("local")
        return Decision(True, states)

    def refused(self, key: str, limits: Sequence[Limit], cost: int) -> Decision | None:
        """The refusal Redis gave ``key`` for a request of at most ``cost``, while its wait lasts
        (``reset`` counted down), or ``None``."""
        refused = self._refused.get(key)
        if refused is None:
            return None
        now = self.clock()
        if now >= refused.until or refused.limits != tuple(limits):
            del self._refused[key]
            return None
        if cost < refused.cost:  # a smaller request may fit sooner: Redis decides
            return None
        states = tuple(
            LimitState(limit, 0, max(1, math.ceil(reset_at - now)))
            for limit, reset_at in zip(refused.limits, refused.reset_at, strict=True)
        )
        self.events.reservation_event("refused_locally")
        return Decision(False, states)

    def want(self, key: str, limits: Sequence[Limit], cost: int) -> int:
        """How many units the next round trip for ``key`` should take (at least ``cost``). One trip per
        key at a time takes more than its cost: concurrent requests of this process, each taking *k*,
        would hold far more than it spends while other processes are refused."""
        k = self._k.get(key, 1)
        if k <= 1:
            return cost
        now = self.clock()
        if self._trip_out(key, now):
            return cost
        self._reserving[key] = now
        self._bound(self._reserving)
        cap = min(self.max_want, *(limit.amount // self.share for limit in limits))
        return max(cost, min(k, cap))

    def _trip_out(self, key: str, now: float) -> bool:
        """A reserving trip for ``key`` is on its way (sent less than ``_TRIP_TIMEOUT`` ago)."""
        since = self._reserving.get(key)
        return since is not None and now - since < _TRIP_TIMEOUT

    def abandon(self, key: str) -> None:
        """The trip that asked ``want`` for ``key`` took nothing (its request was refused before the
        limit was reached, e.g. a revoked token): another trip may reserve now."""
        self._reserving.pop(key, None)

    def record(
        self,
        key: str,
        limits: Sequence[Limit],
        cost: int,
        want: int,
        reply: tuple[Decision, int, int],
        sent: float,
    ) -> Decision:
        """What Redis answered (``reply``: ``RateLimiter.reserve``'s decision, units granted and
        milliseconds they last) a request of ``cost`` that asked for ``want`` units, sent at ``sent``
        (this clock): keep the units granted beyond its cost, or remember the refusal; return the
        decision to answer the request with (its remaining counts the units held here)."""
        decision, granted, left_ms = reply
        limits = tuple(limits)
        states = decision.states
        if want > cost:
            self._reserving.pop(key, None)  # the key's reserving trip is back
        if not decision.admitted:  # (what this process still holds was counted: it stays spendable)
            until = sent + min(decision.retry_after, self.refusal_memory)
            self._refused[key] = _Refused(limits, cost, until, tuple(sent + state.reset for state in states))
            self._bound(self._refused)
            return decision
        self._refused.pop(key, None)
        k = self._k.get(key, 1)
        if granted >= k:  # the last reservation was used up (a lapse halved k in take) and this one is whole
            k *= 2
        smallest_left = min(state.remaining for state in states)
        cap = min(self.max_want, max(1, smallest_left // 8), *(limit.amount // self.share for limit in limits))
        self._k[key] = max(1, min(k, cap))
        self._bound(self._k)
        units = granted - cost
        held = self._held.get(key)
        if held is not None and (held.limits != limits or self.clock() >= held.until):
            self._lapse(key, held)
            held = None
        if units > 0 and left_ms > 0:
            until = sent + left_ms / 1000
            remaining = tuple(state.remaining for state in states)
            reset_at = tuple(sent + state.reset for state in states)
            if held is None:
                held = self._held[key] = _Held(limits, units, until, remaining, reset_at)
                self._bound(self._held)
            else:
                # Concurrent requests of this process each took some: every unit is kept, spendable
                # until the earlier end (all were counted in the sub-window still running).
                held.units += units
                held.until = min(held.until, until)
                held.remaining, held.reset_at = remaining, reset_at
            self.events.reservation_event("taken")
        if held is None:
            return decision
        return Decision(True, tuple(state._replace(remaining=state.remaining + held.units) for state in states))

    def _lapse(self, key: str, held: _Held) -> None:
        del self._held[key]
        if held.units > 0:
            self._k[key] = max(1, self._k.get(key, 1) // 2)
            self.events.reservation_event("lapsed")

    def _bound(self, table: dict[str, Any]) -> None:
        while len(table) > self.max_keys:
            del table[next(iter(table))]

"""A circuit breaker for Redis calls, so an outage costs one timeout, not one per request."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Literal, TypeVar

from gateway.errors import REDIS_ERRORS, RedisUnavailable
from gateway.events import NO_EVENTS, GatewayEvents

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]

logger = logging.getLogger("gateway.redis")


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``reset_timeout`` seconds one
    probe call is let through, and its outcome closes or re-opens the circuit.

    Failures are counted per Redis round trip: the callers whose calls shared one failed round trip
    (``gateway.scripts`` batches them) raise exceptions marked with the same ``round_trip``, and
    count once, so one slow reply cannot open the circuit for everyone.

    After a failure, further calls *from the same context* (the same request: ASGI servers run each
    request in its own task, hence its own context) are skipped for ``cooldown`` seconds, so a
    request that needs Redis twice pays one timeout, not two, while other requests are unaffected.

    One breaker per process is shared by every component that talks to the same Redis. ``events``
    hears every call and state change; ``clock`` (seconds) is there so tests can move time.
    """

    def __init__(
        self,
        *,
        failure_threshold: int = 3,
        reset_timeout: float = 1.0,
        cooldown: float = 1.0,
        events: GatewayEvents | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout <= 0:
            raise ValueError("reset_timeout must be positive")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self.cooldown = cooldown
        #: Told of every call and state change; also what the scripts' round trips report to.
        self.events = events or NO_EVENTS
        #: Seconds, for the pauses (``reset_timeout``, ``cooldown``); injectable so tests need not wait.
        self.clock = clock
        self._failed_here: ContextVar[float] = ContextVar(f"redis_failed_{id(self)}", default=-cooldown)
        self.state: State = "closed"
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self._last_round_trip: object = None
        #: How many times the circuit entered each state (for metrics).
        self.transitions: dict[State, int] = {"closed": 0, "open": 0, "half_open": 0}

    def allow(self) -> bool:
        """Whether a Redis call may be attempted now."""
        if self.state == "closed":
            return self.clock() - self._failed_here.get() >= self.cooldown
        if self.state == "open" and self.clock() - self._opened_at >= self.reset_timeout:
            self._set("half_open")
        if self.state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Record a call that Redis answered: the failure count restarts and an open breaker closes."""
        self._failures = 0
        self._probing = False
        if self.state != "closed":
            self._set("closed")

    def failure(self, exc: BaseException | None = None) -> None:
        """Record a failed call; ``exc``'s ``round_trip`` mark (if any) makes a shared round trip count once."""
        self._probing = False
        self._failed_here.set(self.clock())
        round_trip = getattr(exc, "round_trip", None)
        if round_trip is not None:
            if round_trip is self._last_round_trip:
                return
            self._last_round_trip = round_trip
        self._failures += 1
        if self.state == "half_open" or self._failures >= self.failure_threshold:
            self._opened_at = self.clock()
            if self.state != "open":
                self._set("open")

    async def call(self, factory: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call through the breaker; any Redis failure becomes ``RedisUnavailable``."""
        if not self.allow():
            raise RedisUnavailable("circuit open")
        started = time.perf_counter()
        try:
            result = await factory()
        except REDIS_ERRORS as exc:
            self.failure(exc)
            self.events.redis_call(time.perf_counter() - started, False)
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            self._probing = False  # a cancelled probe must not leave the circuit half-open for good
            raise
        self.success()
        self.events.redis_call(time.perf_counter() - started, True)
        return result

    def _set(self, state: State) -> None:
        self.state = state
        self.transitions[state] += 1
        log = logger.warning if state == "open" else logger.info
        log("redis circuit %s", state.replace("_", "-"))
        self.events.circuit_changed(state)

"""What rate limiting does while Redis cannot answer (``RateLimits.on_redis_error``)."""

from __future__ import annotations

import logging

from gateway.problem import ProblemResponse
from gateway.ratelimit.limits import Decision
from gateway.ratelimit.policy import OnRedisError, Plan
from gateway.ratelimit.strategy import LocalLimiter

logger = logging.getLogger("gateway.ratelimit")


class Fallback:
    """``"local"``: the same limits counted in this process (approximate: each worker alone);
    ``"open"``: no limit; ``"closed"``: 503."""

    def __init__(self, mode: OnRedisError) -> None:
        self.mode = mode
        self.local = LocalLimiter()

    def decide(self, plan: Plan, exc: Exception) -> Decision | ProblemResponse | None:
        """A decision from the local limiter, None (no limit) or the 503 to send."""
        if self.mode == "local":
            return self.local.hit(plan.key, plan.policy.limits, plan.policy.cost)
        if self.mode == "open":
            return None
        logger.warning("rate limit unavailable (%s); refusing", exc)
        return ProblemResponse(503, "Rate limiting is unavailable; try again shortly.", headers={"Retry-After": "2"})

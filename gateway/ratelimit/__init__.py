"""Rate limiting: per user and endpoint, exact across processes, in one Redis round trip.

Shaped like ``limits``: ``parse`` (``"100/hour"``), ``strategy`` (the algorithm: its Lua and its
Python face), ``policy`` (which limits a request counts against, and ``@limit`` for routes),
``headers`` (the IETF draft headers and the 429), ``fallback`` (while Redis is away) and
``middleware``.
"""

from gateway.ratelimit.fallback import Fallback
from gateway.ratelimit.headers import QUOTA_EXCEEDED, rate_limit_headers, too_many_requests
from gateway.ratelimit.limits import Decision, Limit, LimitState, parse_limits
from gateway.ratelimit.middleware import RateLimitMiddleware
from gateway.ratelimit.policy import Plan, Planner, Policy, PolicyChooser, RateLimits, limit
from gateway.ratelimit.strategy import LocalLimiter, RateLimiter

__all__ = [
    "QUOTA_EXCEEDED",
    "Decision",
    "Fallback",
    "Limit",
    "LimitState",
    "LocalLimiter",
    "Plan",
    "Planner",
    "Policy",
    "PolicyChooser",
    "RateLimitMiddleware",
    "RateLimiter",
    "RateLimits",
    "limit",
    "parse_limits",
    "rate_limit_headers",
    "too_many_requests",
]

"""``GatewayEvents``: what the gateway's components report, in one small interface.

Give one object to every component (``events=``) to export metrics or write logs; each method does
nothing by default, so a subclass overrides only what it needs. The methods are called on the hot
path: keep them cheap (a counter increment), never blocking.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.ratelimit.limits import Decision


class GatewayEvents:
    """Override what you need; every method is a no-op here."""

    def token_rejected(self, reason: str) -> None:
        """A request was refused by authentication (``missing``, ``expired``, ``revoked``, ...)."""

    def rate_limit_decision(self, policy: str, decision: Decision, *, shadow: bool = False) -> None:
        """A rate-limit decision under ``policy`` (``shadow``: a refusal was reported, not enforced)."""

    def cache_event(self, event: str) -> None:
        """The cache decorator did something: ``hits``, ``misses``, ``loads``, ``waits``, ``errors``,
        ``stale_fills_refused``."""

    def near_cache_event(self, event: str) -> None:
        """The near cache served a local copy (``hits``), applied an invalidation Redis pushed
        (``invalidations``), or lost its channel and dropped every copy (``resets``)."""

    def reservation_event(self, event: str) -> None:
        """Reservations (``gateway.ratelimit.reservations``): units ``taken`` ahead of need in a round
        trip, a request admitted from them (``local``), units that ``lapsed`` unspent, a request
        refused from a remembered refusal (``refused_locally``)."""

    def revocation_view_event(self, event: str) -> None:
        """The revocation view (``gateway.revocation_view``): a token found valid without Redis
        (``hits``), one that had to be checked in Redis (``misses``), an entry dropped by a push
        (``invalidations``), every entry dropped because the channel was lost or Redis flushed
        (``resets``)."""

    def redis_call(self, seconds: float, ok: bool) -> None:
        """One Redis call through the circuit breaker finished (``ok`` False: failed or timed out)."""

    def redis_round_trip(self, seconds: float, calls: int, ok: bool) -> None:
        """One round trip of batched script calls (``calls`` of them shared it)."""

    def circuit_changed(self, state: str) -> None:
        """The circuit breaker entered ``closed``, ``open`` or ``half_open``."""


#: The events of a component given none.
NO_EVENTS = GatewayEvents()

"""``DataLossEpoch``: revocations survive Redis losing its data (layout in ``lua/epoch.lua``).

A Redis that restarts empty forgets every ``blacklist:`` entry and log-out mark. So the gateway
records an ``epoch`` (server time) when it first meets a Redis, and every revocation check reads it:
if it is gone, the data was lost, a new epoch is written, and every token issued before it is
refused: users log in again rather than a revoked token getting through.
"""

from __future__ import annotations

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.keys import Keys
from gateway.scripts import ScriptSet
from gateway.types import RedisSource


class DataLossEpoch:
    """The epoch key of a deployment (one per Redis; on a cluster one per user, see ``key``)."""

    def __init__(self, redis: RedisSource, *, keys: Keys | None = None, breaker: CircuitBreaker | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("epoch_init")

    @property
    def checked(self) -> bool:
        """Whether revocation checks read the epoch. On a cluster it is per user and written at
        login, so it cannot tell a new user from lost data: it is not checked there (sessions still
        die with their hash; see the README)."""
        return not self.keys.cluster

    def key(self, user_id: str) -> str:
        return self.keys.user("epoch", user_id) if self.keys.cluster else self.keys("epoch")

    async def ensure(self) -> int:
        """Record when this Redis's data began, once, at server time; the app calls it at start-up
        so tokens issued from then on pass. Returns the epoch in force (0 on a cluster)."""
        if not self.checked:
            return 0
        scripts = self._scripts.bind(require_client(self.redis), self.breaker.events)
        epoch = await self.breaker.call(lambda: scripts["epoch_init"](keys=[self.key("")]))
        return int(epoch)

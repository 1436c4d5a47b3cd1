"""``DataLossEpoch``: revocations survive Redis losing its data (layout in ``lua/epoch.lua``).

A Redis that restarts empty forgets every ``blacklist:`` entry and log-out mark. So the gateway
records an ``epoch`` (server time) when it first meets a Redis, and every revocation check reads it:
if it is gone, the data was lost, a new epoch is written, and every token issued before it is
refused: users log in again rather than a revoked token getting through.

On Redis Cluster a node can lose its data alone, so there is one epoch per hash slot:
``epoch:{t}``, where ``t`` is a precomputed tag that hashes to that slot. A revocation check reads
the epoch of the slot its user's keys live in, in the same script and the same slot, and a node
restarted empty has lost exactly the epochs of the slots whose revocations it lost.
"""

from __future__ import annotations

import asyncio
import functools

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from gateway.breaker import CircuitBreaker
from gateway.connection import require_client
from gateway.redis_keys import Keys, escape
from gateway.scripts import ScriptSet
from gateway.types import RedisSource


@functools.cache
def slot_tags() -> tuple[str, ...]:
    """For every cluster hash slot, the shortest hex string that hashes to it (computed once, ~0.3 s)."""
    tags: dict[int, str] = {}
    candidate = 0
    while len(tags) < REDIS_CLUSTER_HASH_SLOTS:
        text = format(candidate, "x")
        tags.setdefault(key_slot(text.encode()), text)
        candidate += 1
    return tuple(tags[slot] for slot in range(REDIS_CLUSTER_HASH_SLOTS))


class DataLossEpoch:
    """The epoch key of a deployment: one per Redis; on a cluster, one per hash slot."""

    def __init__(self, redis: RedisSource, *, keys: Keys | None = None, breaker: CircuitBreaker | None = None) -> None:
        self.redis = redis
        self.keys = keys or Keys()
        self.breaker = breaker or CircuitBreaker()
        self._scripts = ScriptSet("epoch_init")

    #: Revocation checks read the epoch (on a cluster too: one per slot).
    checked = True

    def key(self, user_id: str) -> str:
        """The epoch a revocation check of ``user_id`` reads: in the slot of the user's keys."""
        if not self.keys.cluster:
            return self.keys("epoch")
        return self.keys(f"epoch:{{{slot_tags()[key_slot(escape(user_id).encode())]}}}")

    async def ensure(self) -> int:
        """Record when this Redis's data began (every slot's, on a cluster), once, at server time;
        the app calls it at start-up so tokens issued from then on pass. Returns the epoch in force
        (of slot 0, on a cluster)."""
        client = require_client(self.redis)
        scripts = self._scripts.bind(client, self.breaker.events)
        if not self.keys.cluster:
            epoch = await self.breaker.call(lambda: scripts["epoch_init"](keys=[self.key("")]))
            return int(epoch)
        keys = [self.keys(f"epoch:{{{tag}}}") for tag in slot_tags()]
        replies = await self.breaker.call(lambda: asyncio.gather(*(scripts["epoch_init"](keys=[k]) for k in keys)))
        return int(replies[0])

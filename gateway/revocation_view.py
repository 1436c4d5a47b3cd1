"""``RevocationView``: this process's memory of tokens Redis has found valid, kept coherent by Redis's
invalidation push, so a token already checked is checked again without a round trip.

What a revocation check reads (``lua/revocation.lua``) is four keys: the token's ``blacklist:`` entry,
its user's ``logout_all:`` mark, its user's ``session:`` hash and the data-loss ``epoch``. When Redis
finds a token valid, the view remembers that, with those four keys; the tracking channel
(``NearCache.listen``, ``CLIENT TRACKING ... BCAST``) pushes the name of every one of them that anyone
changes, and the entries that read it are dropped. A token the view holds is admitted without Redis.

**On one host, once a revocation has answered its client, no request checked after that is
admitted.** A revocation (``revoke``, ``logout``, ``revoke_all``, a session ended or rotated, a new
epoch) writes one of those keys. Redis sends the invalidation to the tracking connection before it
answers the write (BCAST invalidations are written out before the replies of the same event-loop
turn), and on one host the kernel puts those bytes in this process's socket buffer as Redis writes
them. So by the time the revoking client has its answer, the push is in the buffer. A request checked
after that was read from its socket after that; ``admits`` first drains the channel's socket
(``NearCache.drain``: one non-blocking read per event-loop turn, which covers every request that turn
serves, since each was read from its socket before the turn began), so the entry is gone and the
request goes to Redis, which refuses it. Across hosts the push travels on its own connection: the
window is the network delay between Redis and this host (docs/explanation/guarantees.md).

**No stale fill.** ``mark`` is taken before the check is sent; ``remember`` keeps the verdict only if
no push for one of its keys (and no reset) arrived since. A revocation that lands between Redis's
check and our reading of its reply is therefore never papered over.

**Losing the channel means the view is not trusted**: every entry is dropped and nothing is admitted
from memory until tracking is back (``ready``); every request takes the one-trip path meanwhile. A
flush drops every entry too.

**Sessions stay alive and idle expiry holds.** An entry lasts at most ``touch_ms`` (the login's touch
interval) or ``max_age`` seconds, whichever is shorter. The next check in Redis records use of the
login as it always did (at most once per touch interval), so ``seen`` is never more than two touch
intervals old when a request is admitted from memory, within the idle limit (``SESSION_TTL`` plus one
touch interval). Expiry and the other time-based claims are checked by the verifier on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.blacklist import TokenBlacklist
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.nearcache import NearCache
from gateway.tokens import Claims

#: The key families a revocation check reads (``TokenBlacklist.check_keys``), followed on the channel.
FAMILIES = ("blacklist:", "logout_all:", "session:", "epoch")


@dataclass(slots=True)
class _Entry:
    keys: tuple[str, ...]
    until: float


class RevocationView:
    """Tokens found valid, remembered until a key their check read changes (see the module docstring).
    ``blacklist`` is the gateway's; ``channel`` the process's tracking channel (a ``NearCache``, one
    with no prefixes of its own will do), not yet started. At most ``max_entries`` tokens are kept
    (oldest out), each for at most ``max_age`` seconds (and a login's touch interval); ``clock`` is
    monotonic seconds; ``events`` hears ``revocation_view_event``."""

    def __init__(
        self,
        *,
        blacklist: TokenBlacklist,
        channel: NearCache,
        max_entries: int = 100_000,
        max_age: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        events: GatewayEvents | None = None,
    ) -> None:
        if max_entries < 1 or max_age <= 0:
            raise ValueError("max_entries and max_age must be positive")
        self.blacklist = blacklist
        self.channel = channel
        self.max_entries = max_entries
        self.max_age = max_age
        self.clock = clock
        self.events = events or NO_EVENTS
        self._live = False
        self._entries: dict[str, _Entry] = {}  # by the token's blacklist key
        self._readers: dict[str, set[str]] = {}  # a user's logout_all / session / epoch key -> entries
        self._seq = 0
        self._floor = 0  # marks older than this are refused (a reset, or forgotten history)
        self._changed: dict[str, int] = {}  # key -> seq of its last push
        for family in FAMILIES:
            channel.listen(blacklist.keys(family), self)

    @property
    def live(self) -> bool:
        """The channel is up: tokens are admitted from memory."""
        return self._live

    def __len__(self) -> int:
        return len(self._entries)

    def admits(self, claims: Claims) -> bool:
        """True when Redis found this token valid and nothing it read has changed since (every push
        already in the channel's socket is applied first). False: check it in Redis."""
        if not self._live:
            return False
        self.channel.drain()
        entry = self._entries.get(self.blacklist.blacklist_key(claims))
        if entry is None or not self._live:
            self.events.revocation_view_event("misses")
            return False
        if self.clock() >= entry.until:
            self._forget(entry.keys[0])
            self.events.revocation_view_event("misses")
            return False
        self.events.revocation_view_event("hits")
        return True

    def mark(self) -> int:
        """Take before sending a check to Redis; give to ``remember`` with its valid verdict."""
        self.channel.drain()
        return self._seq

    def remember(self, claims: Claims, mark: int) -> bool:
        """Redis found ``claims``'s token valid in a check sent at ``mark``: keep that, unless one of the
        keys it read changed since (or the channel was reset)."""
        if not self._live:
            return False
        self.channel.drain()
        if not self._live or mark < self._floor:
            return False
        keys = tuple(self.blacklist.check_keys(claims))
        changed = self._changed
        if any(changed.get(key, -1) > mark for key in keys):
            return False
        if not all(self.channel.covers(key) for key in keys):
            return False  # read from a server the channel does not follow yet (gateway.topology)
        age = self.max_age
        sid = claims.get("sid")
        if sid and self.blacklist.sessions is not None:
            age = min(age, self.blacklist.sessions.check_args(sid)[1] / 1000)
        token = keys[0]
        self._forget(token)
        self._entries[token] = _Entry(keys, self.clock() + age)
        for key in keys[1:]:
            self._readers.setdefault(key, set()).add(token)
        while len(self._entries) > self.max_entries:
            self._forget(next(iter(self._entries)))
        return True

    # -- what the tracking channel says ------------------------------------------------------

    def invalidated(self, key: str) -> None:
        """``key`` changed: the entries whose check read it are dropped."""
        self._seq += 1
        if len(self._changed) >= 4 * self.max_entries:
            self._changed.clear()  # forget old history; checks sent before now are not remembered
            self._floor = self._seq
        self._changed[key] = self._seq
        dropped = 0
        if key in self._entries:
            self._forget(key)
            dropped = 1
        readers = self._readers.pop(key, None)
        if readers:
            for token in list(readers):
                self._forget(token)
            dropped += len(readers)
        if dropped:
            self.events.revocation_view_event("invalidations")

    def flushed(self) -> None:
        """Redis was flushed: nothing remembered holds."""
        self._reset()

    def lost(self, why: str) -> None:
        """The channel is gone: changes cannot be seen, so nothing is admitted from memory."""
        self._live = False
        self._reset()

    def ready(self) -> None:
        """The channel is (back) up: from now on every change is pushed."""
        self._reset()
        self._live = True

    def _reset(self) -> None:
        self._seq += 1
        self._floor = self._seq
        self._changed.clear()
        if self._entries:
            self.events.revocation_view_event("resets")
        self._entries.clear()
        self._readers.clear()

    def _forget(self, token: str) -> None:
        entry = self._entries.pop(token, None)
        if entry is None:
            return
        for key in entry.keys[1:]:
            readers = self._readers.get(key)
            if readers is not None:
                readers.discard(token)
                if not readers:
                    del self._readers[key]

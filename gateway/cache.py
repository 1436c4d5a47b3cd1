"""``@cached``: a Redis read-through cache decorator for async loaders.

Hits cost one Redis round trip. A miss takes a short *lease* in the cache key itself, so across
every process only one loader fills a key (the others wait for its value), and an invalidation
that lands while a loader is reading the database deletes the lease, so the loader's possibly
stale value is never written (the stale-set race of "Scaling Memcache at Facebook").
Within one process, concurrent misses for one key share a single load. When Redis is down or
slow, the loader runs directly: the cache fails open.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import string
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Generic, NamedTuple, ParamSpec, TypeVar

import orjson

from gateway.breaker import CircuitBreaker
from gateway.connection import resolve_client
from gateway.errors import RedisUnavailable
from gateway.events import NO_EVENTS, GatewayEvents
from gateway.nearcache import NearCache
from gateway.redis_keys import Keys, escape
from gateway.scripts import ScriptSet, nonce
from gateway.types import RedisClient, RedisSource

P = ParamSpec("P")
T = TypeVar("T")


logger = logging.getLogger("gateway.cache")

_HIT, _WAIT = 0, 2  # cache_get.lua's replies (1: this caller holds the lease)


class _LeaderCancelled(Exception):
    """Given to the waiters when the caller loading their key was cancelled: the first to run loads
    instead, with the cancelled caller's ``lease`` (this process still holds it in Redis); the
    others wait on it."""

    def __init__(self, lease: str) -> None:
        self.lease = lease


class Generation:
    """A version number for a family of cache entries (``generation:{name}``): bump it and every
    entry cached under it is stale at once, with one ``INCR``, no ``SCAN`` (tag invalidation). A
    ``cached`` function given ``generation=`` stores each entry with the generation it read, and
    counts an entry of another generation as a miss; a fill whose generation moved while it loaded
    is refused. ``ttl`` keeps the counter (renewed by every bump) far longer than any entry lives.

    When a bump cannot reach Redis, the generation is *pending*: this process bypasses the family's
    entries until :meth:`retry_pending` has bumped it."""

    def __init__(self, name: str, *, redis: RedisSource, keys: Keys | None = None, ttl: int = 30 * 86400,
                 breaker: CircuitBreaker | None = None) -> None:  # fmt: skip
        self.name = name
        self.keys = keys or Keys()
        self.ttl = ttl
        self.breaker = breaker or CircuitBreaker()
        self.pending = False
        self._redis = redis
        self._scripts = ScriptSet("generation_bump")

    @property
    def key(self) -> str:
        """The Redis key of the counter: ``generation:{name}`` (prefixed)."""
        return self.keys.owned("generation", escape(self.name))

    def scope(self, key: str) -> str:
        """An entry key of this family: on a cluster, behind the generation's hash tag, so the
        scripts that read both find them in one slot."""
        return f"{self.keys.prefix}{{{escape(self.name)}}}:{key}" if self.keys.cluster else self.keys(key)

    async def bump(self) -> bool:
        """Make every entry of the family stale. False (and pending) when Redis cannot be reached."""
        client = resolve_client(self._redis)
        try:
            if client is None:
                raise RedisUnavailable("no Redis client")
            scripts = self._scripts.bind(client, self.breaker.events)
            await self.breaker.call(lambda: scripts["generation_bump"](keys=[self.key], args=[self.ttl]))
        except RedisUnavailable as exc:
            self.pending = True
            logger.warning("bumping cache generation %s failed (%s); it stays pending", self.name, exc)
            return False
        self.pending = False
        return True

    def defer(self) -> None:
        """Mark a bump as pending (one another process could not deliver: a shared outbox says so):
        this process bypasses the family's entries until :meth:`retry_pending` has bumped it."""
        self.pending = True

    async def retry_pending(self) -> bool:
        """Bump again if a bump is pending; True when nothing is pending any more."""
        return await self.bump() if self.pending else True


class Publish(NamedTuple):
    """An event added to a Redis Stream in the step that invalidates (``CachedFunction.invalidate(...,
    publish=)``): ``XADD stream MAXLEN ~ max_len * field value ...`` in the same script as the delete
    (and the generation bump), so readers of the stream see the writes in the order they invalidated,
    and no write's event is published without its invalidation. ``stream`` is the full key (prefix
    included); on a cluster it must share the generation's slot (``Generation.scope`` gives such a
    key), or the key's when there is no generation. ``ttl`` (seconds) is renewed by every event.

    When Redis cannot be reached the event is *not* published, now or later (the invalidation stays
    pending and is retried without it): an event delivered after later writes' events would break
    their order, so the caller decides what its readers are told (``invalidate`` returns False)."""

    stream: str
    fields: Mapping[str, str | bytes | int]
    max_len: int = 10_000
    ttl: int = 30 * 86400


#: Argument types whose key text is a function of their value alone (memoised keys).
_PLAIN = (int, str)


class CacheResult(NamedTuple, Generic[T]):
    """A loader's value and whether it came from the cache (Redis, or the near cache)."""

    value: T
    hit: bool


class _Fetched(NamedTuple):
    raw: bytes  # the JSON as stored in Redis
    hit: bool
    value: Any = None  # the loader's value, when it ran (saves parsing raw back)
    loaded: bool = False
    local: bool = False  # from the near cache


#: Where :meth:`CachedFunction.read_json` found the value.
LOCAL, REDIS, LOADER = "local", "redis", "loader"


class CacheStats:
    """Counters of what the cache did (``hits``, ``misses``, ``loads``, ``waits`` for another
    process's fill, ``errors`` when Redis failed and it fell open, ``stale_fills_refused``);
    each is also reported to ``events.cache_event`` (metrics)."""

    EVENTS = ("hits", "misses", "loads", "waits", "errors", "stale_fills_refused")

    def __init__(self, events: GatewayEvents | None = None) -> None:
        self.counts = dict.fromkeys(self.EVENTS, 0)
        self.events = events or NO_EVENTS

    def record(self, event: str) -> None:
        self.counts[event] += 1
        self.events.cache_event(event)

    @property
    def hit_ratio(self) -> float | None:
        lookups = self.counts["hits"] + self.counts["misses"]
        return None if lookups == 0 else self.counts["hits"] / lookups


class CachedFunction(Generic[P, T]):
    """An async loader wrapped by :func:`cached`. Call it like the loader, or use :meth:`lookup`
    to also learn whether the value was a hit, and :meth:`invalidate` after a write."""

    def __init__(
        self,
        func: Callable[P, Awaitable[T]],
        template: str,
        *,
        redis: RedisSource,
        ttl: int,
        miss_ttl: int | None,
        keys: Keys,
        lease_ms: int,
        breaker: CircuitBreaker | None,
        events: GatewayEvents | None = None,
        generation: Generation | None = None,
        near: NearCache | None = None,
    ) -> None:
        if near is not None and generation is not None:
            raise ValueError("a near cache keeps plain entries; a generation's family is not tracked key by key")
        if ttl < 1:
            raise ValueError("ttl must be at least 1 second")
        if miss_ttl is not None and miss_ttl < 1:
            raise ValueError("miss_ttl must be at least 1 second, or None to never cache a None result")
        self.func = func
        self.template = template
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.keys = keys
        self.lease_ms = lease_ms
        self.breaker = breaker or CircuitBreaker()
        self.stats = CacheStats(events)
        self.generation = generation
        self.near = near
        self._redis = redis
        self._signature = inspect.signature(func)
        parameters = self._signature.parameters.values()
        self._names = [p.name for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self._names_set = set(self._names) | {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
        self._defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
        self._formatter = string.Formatter()
        self._parts = list(self._formatter.parse(template))
        fields = {name.split(".")[0].split("[")[0] for _, name, _, _ in self._parts if name}
        self._fields = fields
        unknown = fields - set(self._signature.parameters)
        if unknown:
            raise ValueError(
                f"key template {template!r} names {sorted(unknown)}, which {func.__name__}() does not take"
            )
        self._scripts = ScriptSet("cache_get", "cache_fill", "cache_invalidate")
        self._inflight: dict[str, list[asyncio.Future[_Fetched]]] = {}
        #: Keys whose invalidation has not reached Redis yet; reads of them skip the cache.
        self.pending: set[str] = set()
        self._keys_memo: dict[tuple[Any, ...], str] = {}
        functools.update_wrapper(self, func)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The Redis key for these loader arguments (prefix included). Each argument's text is
        escaped (``gateway.redis_keys.escape``), so ``profile:{a}:{b}`` gives different keys for
        ``("x:y", "z")`` and ``("x", "y:z")``."""
        memo = not kwargs and all(type(arg) in _PLAIN for arg in args)  # (1, 1.0 and True are equal keys)
        if memo:
            key = self._keys_memo.get(args)
            if key is not None:
                return key
            if len(self._keys_memo) >= 4096:
                self._keys_memo.clear()
            key = self._keys_memo[args] = self._key(args, kwargs)
            return key
        return self._key(args, kwargs)

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if len(args) <= len(self._names) and not kwargs.keys() - self._names_set:
            # Fast path (the common call shapes): no Signature.bind on every request.
            arguments = {**self._defaults, **dict(zip(self._names, args, strict=False)), **kwargs}
            if self._fields <= arguments.keys():
                return self._scoped(self._render(arguments))
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return self._scoped(self._render(bound.arguments))

    def _scoped(self, rendered: str) -> str:
        return self.generation.scope(rendered) if self.generation is not None else self.keys(rendered)

    def _render(self, arguments: dict[str, Any]) -> str:
        pieces: list[str] = []
        for literal, name, spec, conversion in self._parts:
            if literal:
                pieces.append(literal)
            if name is None:
                continue
            value = arguments[name] if name in arguments else self._formatter.get_field(name, (), arguments)[0]
            if conversion:
                value = self._formatter.convert_field(value, conversion)
            pieces.append(escape(format(value, spec) if spec else str(value)))
        return "".join(pieces)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T:
        return (await self.lookup(*args, **kwargs)).value

    async def lookup(self, *args: P.args, **kwargs: P.kwargs) -> CacheResult[T]:
        """The value and whether it was served from the cache (``hit``) or loaded (``hit=False``)."""
        fetched = await self._shared_fetch(self.key(*args, **kwargs), args, kwargs)
        value = fetched.value if fetched.loaded else orjson.loads(fetched.raw)
        return CacheResult(value, fetched.hit)

    async def lookup_json(self, *args: P.args, **kwargs: P.kwargs) -> tuple[bytes, bool]:
        """The value as the JSON bytes stored in Redis, and ``hit``: for handlers that send it on
        as it is (no parse, no re-serialisation; the bytes are the same on a hit and a miss)."""
        fetched = await self._shared_fetch(self.key(*args, **kwargs), args, kwargs)
        return fetched.raw, fetched.hit

    async def read_json(self, *args: P.args, **kwargs: P.kwargs) -> tuple[bytes, str]:
        """Like :meth:`lookup_json`, with where the bytes came from: ``"local"`` (the near cache),
        ``"redis"`` or ``"loader"``."""
        fetched = await self._shared_fetch(self.key(*args, **kwargs), args, kwargs)
        return fetched.raw, LOCAL if fetched.local else REDIS if fetched.hit else LOADER

    async def _shared_fetch(self, key: str, args: Any, kwargs: Any) -> _Fetched:
        """Concurrent misses for one key in this process share one fetch. When the caller doing it
        is cancelled (a client disconnect, a timeout, shutdown), a waiting caller takes over with its
        lease, instead of every waiter failing with the leader's cancellation."""
        near = self.near
        if near is not None and key not in self.pending:
            raw = near.get(key)
            if raw is not None:
                # Yield to the loop once, as a Redis read would: measured under wrk -c32, answering in
                # the same turn as the gateway step's reply lost ~10 % throughput (the requests that
                # arrive meanwhile then miss the next batched round trip).
                await asyncio.sleep(0)
                return _Fetched(raw, True, local=True)
        lease = None
        while True:
            waiters = self._inflight.get(key)
            if waiters is None:
                break
            future: asyncio.Future[_Fetched] = asyncio.get_running_loop().create_future()
            waiters.append(future)
            try:
                return await future
            except _LeaderCancelled as gone:
                lease = gone.lease
        self._inflight[key] = waiters = []
        lease = lease or nonce()
        try:
            fetched = await self._fetch(key, args, kwargs, lease)
        except asyncio.CancelledError:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(_LeaderCancelled(lease))
            raise
        except BaseException as exc:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        finally:
            del self._inflight[key]
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(fetched)
        return fetched

    async def invalidate(
        self, *args: Any, bump: Generation | None = None, publish: Publish | None = None, **kwargs: Any
    ) -> bool:
        """Delete the entry (and any lease on it); with ``bump``, also bump that generation, and with
        ``publish``, add that event to its stream, in the same step (one script; on a cluster, where
        the entry lives in another slot, the delete is a call of its own before the bump and the
        event). When Redis cannot be reached, returns False and remembers the key (and the
        generation) as *pending*: this process reads them from the loader, never from Redis, until
        :meth:`retry_pending` (and ``Generation.retry_pending``) has delivered them, so a stale
        entry is never served here. The event is then not published (see :class:`Publish`)."""
        return await self.invalidate_key(self.key(*args, **kwargs), bump=bump, publish=publish)

    async def invalidate_key(self, key: str, *, bump: Generation | None = None, publish: Publish | None = None) -> bool:
        """:meth:`invalidate` by the full key (as :meth:`key` returns it)."""
        near = self.near
        if near is not None:
            near.discard(key)  # reads in flight now may not keep what they find
        client = self._client()
        deleted = False  # (on a cluster, by a call of its own)
        try:
            if client is None:
                raise RedisUnavailable("no Redis client")
            if bump is None and publish is None:
                await self.breaker.call(lambda: client.delete(key))
            else:
                keys, args = _invalidation([] if self.keys.cluster else [key], bump, publish)
                if self.keys.cluster:
                    await self.breaker.call(lambda: client.delete(key))
                    deleted = True
                scripts = self._scripts.bind(client, self.breaker.events)
                await self.breaker.call(lambda: scripts["cache_invalidate"](keys=keys, args=args))
                if bump is not None:
                    bump.pending = False
        except RedisUnavailable as exc:
            self.stats.record("errors")
            if deleted:
                self.pending.discard(key)
            else:
                self.pending.add(key)
            if bump is not None:
                bump.pending = True
            logger.warning("cache invalidation of %s failed (%s); it stays pending", key, exc)
            return False
        finally:
            if near is not None:
                near.discard(key)  # and nothing read before the delete is kept
        self.pending.discard(key)
        return True

    def defer(self, keys: Iterable[str]) -> None:
        """Mark invalidations of ``keys`` as pending (ones another process could not deliver: a shared
        outbox says so): this process reads them from the loader until :meth:`retry_pending` has
        deleted them in Redis."""
        self.pending.update(keys)

    async def retry_pending(self) -> list[str]:
        """Try the pending invalidations again; returns the keys now deleted in Redis."""
        done = []
        for key in list(self.pending):
            if not await self.invalidate_key(key):
                break  # still unreachable: try again later
            done.append(key)
        return done

    def _client(self) -> RedisClient | None:
        return resolve_client(self._redis)

    async def _fetch(self, key: str, args: Any, kwargs: Any, token: str) -> _Fetched:
        client = self._client()
        generation = self.generation
        if client is None or key in self.pending or (generation is not None and generation.pending):
            return await self._load_only(args, kwargs)
        scripts = self._scripts.bind(client, self.breaker.events)
        keys = [key] if generation is None else [key, generation.key]
        near = self.near
        mark = near.mark() if near is not None else 0
        try:
            reply = await self.breaker.call(lambda: scripts["cache_get"](keys=keys, args=[token, self.lease_ms]))
        except RedisUnavailable:
            self.stats.record("errors")
            return await self._load_only(args, kwargs)
        if reply[0] == _HIT:
            self.stats.record("hits")
            if near is not None:
                near.put(key, reply[1], mark)
            return _Fetched(reply[1], True)
        self.stats.record("misses")
        if reply[0] == _WAIT:
            waited = await self._wait_for_fill(client, key)
            if waited is not None:
                if near is not None:
                    near.put(key, waited, mark)
                return _Fetched(waited, True)
            return await self._load_only(args, kwargs)
        fetched = await self._load_only(args, kwargs)
        ttl = self.ttl if fetched.value is not None else self.miss_ttl
        if ttl is None:
            return fetched
        read_at = reply[1] if len(reply) > 1 else b"0"
        try:
            stored = await self.breaker.call(
                lambda: scripts["cache_fill"](keys=keys, args=[token, fetched.raw, ttl, read_at]),
            )
        except RedisUnavailable:
            self.stats.record("errors")
        else:
            if not stored:
                self.stats.record("stale_fills_refused")
        return fetched

    async def _load_only(self, args: Any, kwargs: Any) -> _Fetched:
        value = await self._load(args, kwargs)
        return _Fetched(orjson.dumps(value), False, value, True)

    async def _load(self, args: Any, kwargs: Any) -> T:
        self.stats.record("loads")
        return await self.func(*args, **kwargs)

    async def _wait_for_fill(self, client: RedisClient, key: str) -> bytes | None:
        """Poll briefly for the lease holder's value; None means load it ourselves."""
        self.stats.record("waits")
        delay, waited = 0.005, 0.0
        while waited < self.lease_ms / 1000:
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 0.05)
            try:
                value: Any = await self.breaker.call(lambda: client.get(key))
            except RedisUnavailable:
                return None
            if value is None:
                return None  # the lease expired or was invalidated: load directly
            if not value.startswith(b"!"):
                # A generation-scoped entry is stored behind "<generation>|"; the fill just checked it.
                return bytes(value).partition(b"|")[2] if self.generation is not None else bytes(value)
        return None


def _invalidation(
    deletes: list[str], bump: Generation | None, publish: Publish | None
) -> tuple[list[str], list[str | bytes | int]]:
    """``cache_invalidate.lua``'s KEYS and ARGV."""
    keys = [*deletes]
    args: list[str | bytes | int] = [len(deletes), "", "", ""]
    if bump is not None:
        keys.append(bump.key)
        args[1] = bump.ttl
    if publish is not None:
        if publish.max_len < 1 or publish.ttl < 1 or not publish.fields:
            raise ValueError("an event needs fields, and its stream a max_len and a ttl of at least 1")
        keys.append(publish.stream)
        args[2], args[3] = publish.max_len, publish.ttl
        for field, value in publish.fields.items():
            args += [field, value]
    return keys, args


def cached(
    template: str,
    *,
    redis: RedisSource,
    ttl: int = 3600,
    miss_ttl: int | None = 60,
    keys: Keys | None = None,
    lease_ms: int = 2000,
    breaker: CircuitBreaker | None = None,
    events: GatewayEvents | None = None,
    generation: Generation | None = None,
    near: NearCache | None = None,
) -> Callable[[Callable[P, Awaitable[T]]], CachedFunction[P, T]]:
    """Cache an async loader's JSON-serialisable result in Redis under ``template.format(**args)``.

    ``redis`` is a client, or a callable returning the client (or None while there is none), so
    the decorator can be applied before the app's lifespan has created it. A ``None`` result is
    cached for ``miss_ttl`` seconds (``None`` disables that) so floods of lookups for missing
    rows do not reach the database. With ``generation``, the entries form a family that one
    ``Generation.bump()`` (or an ``invalidate(..., bump=)``) makes stale at once. With ``near``
    (a started ``NearCache`` tracking the template's prefix), hits are also kept in process memory,
    coherent with Redis, and a warm read costs no Redis round trip at all.

    ``keys`` puts the deployment's prefix before the keys; ``lease_ms`` is how long one loader holds
    a missing key while the others wait for its result; ``breaker`` and ``events`` as for the other
    parts. Returns a decorator; the decorated function becomes a ``CachedFunction``, called as before
    and with ``invalidate`` and ``read_json`` besides. When Redis cannot answer, the loader is called
    (fail open).
    """

    def decorate(func: Callable[P, Awaitable[T]]) -> CachedFunction[P, T]:
        return CachedFunction(
            func,
            template,
            redis=redis,
            ttl=ttl,
            miss_ttl=miss_ttl,
            keys=keys or Keys(),
            lease_ms=lease_ms,
            breaker=breaker,
            events=events,
            generation=generation,
            near=near,
        )

    return decorate


__all__ = ["CacheResult", "CachedFunction", "Generation", "Publish", "cached"]

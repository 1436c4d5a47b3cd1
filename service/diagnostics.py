"""The seed's diagnostics (``/test-redis``, ``/test-cache``) and the health probes."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import ProblemResponse
from gateway.errors import REDIS_ERRORS
from service.responses import JSON, parse_body
from service.schemas import CacheProbeWrite
from service.state import Kapi
from service.store import now_rfc3339

TEST_CACHE_KEY = "test_cache"
TEST_CACHE_TTL = 60


def redis_down(detail: str = "Redis is unreachable.") -> ProblemResponse:
    return ProblemResponse(503, detail, headers={"Retry-After": "5"})


async def test_redis(request: Request) -> Response:
    """PING, server version and round-trip time: the seed's first troubleshooting step."""
    kapi = Kapi.of(request)
    if kapi.redis is None:
        return redis_down()
    try:
        started = time.perf_counter()
        await kapi.redis.ping()
        ping_ms = (time.perf_counter() - started) * 1000
        info = await kapi.redis.info()
        families = await count_families(kapi)
    except REDIS_ERRORS as exc:
        return redis_down(f"Redis is unreachable: {type(exc).__name__}.")
    hits, misses = info.get("keyspace_hits", 0), info.get("keyspace_misses", 0)
    policy = info.get("maxmemory_policy")
    return JSON(
        {
            "status": "ok",
            "redis_version": info.get("redis_version"),
            "ping_ms": round(ping_ms, 3),
            "maxmemory_policy": policy,
            "warnings": eviction_warnings(policy),
            "used_memory": info.get("used_memory"),
            "used_memory_human": info.get("used_memory_human"),
            "connected_clients": info.get("connected_clients"),
            "listing_cache_hit_ratio": kapi.listings.read.stats.hit_ratio,  # this process, since start
            "keyspace_hit_ratio": round(hits / (hits + misses), 4) if hits + misses else None,  # all of Redis
            "keys": families,
            "circuit": kapi.breaker.state,
        }
    )


def eviction_warnings(policy: str | None) -> list[str]:
    """What is wrong with this eviction policy for the Redis that holds revocations, if anything."""
    if policy in (None, "noeviction"):
        return []
    return [
        f"maxmemory-policy is {policy}: under memory pressure Redis may evict blacklist:, logout_all: and "
        "session: keys (they carry TTLs), silently undoing revocations. Use noeviction for the Redis that "
        "holds security state (put the cache on a separate Redis if it must evict)."
    ]


#: The key families counted by /test-redis; a SCAN stops after this many keys (then counts are "at least").
FAMILIES = ("listing", "blacklist", "session", "rate_limit")
SCAN_BUDGET = 10_000


async def count_families(kapi: Kapi) -> dict[str, Any]:
    """Keys per family, by SCAN (never KEYS), bounded so a big Redis answers quickly."""
    assert kapi.redis is not None
    counts = dict.fromkeys(FAMILIES, 0)
    prefix = kapi.keys("")
    scanned = 0
    async for key in kapi.redis.scan_iter(match=f"{prefix}*", count=1000):
        family = key.decode(errors="replace")[len(prefix) :].split(":", 1)[0]
        if family in counts:
            counts[family] += 1
        scanned += 1
        if scanned >= SCAN_BUDGET:
            return {**counts, "complete": False}
    return {**counts, "complete": True}


async def write_test_cache(request: Request) -> Response:
    body = await parse_body(request, CacheProbeWrite, optional=True)
    if isinstance(body, Response):
        return body
    kapi = Kapi.of(request)
    value = body.value if body.value is not None else now_rfc3339()
    if kapi.redis is None:
        return redis_down()
    try:
        await kapi.redis.set(kapi.keys(TEST_CACHE_KEY), value, ex=TEST_CACHE_TTL)
    except REDIS_ERRORS as exc:
        return redis_down(f"Redis is unreachable: {type(exc).__name__}.")
    return JSON({"key": TEST_CACHE_KEY, "value": value, "ttl": TEST_CACHE_TTL}, status_code=201)


async def read_test_cache(request: Request) -> Response:
    kapi = Kapi.of(request)
    if kapi.redis is None:
        return redis_down()
    key = kapi.keys(TEST_CACHE_KEY)
    try:
        async with kapi.redis.pipeline(transaction=False) as pipe:
            pipe.get(key)
            pipe.ttl(key)
            value, ttl = await pipe.execute()
    except REDIS_ERRORS as exc:
        return redis_down(f"Redis is unreachable: {type(exc).__name__}.")
    if value is None:
        return ProblemResponse(404, "No test value is cached (it expires 60 s after POST /test-cache).")
    return JSON({"key": TEST_CACHE_KEY, "value": value.decode("utf-8", "replace"), "ttl": ttl})


async def health(request: Request) -> Response:
    return JSON({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 only when both Redis and the database answer, so a balancer stops sending traffic otherwise."""
    kapi = Kapi.of(request)
    checks = {"redis": "ok", "database": "ok"}
    try:
        if kapi.redis is None:
            raise OSError("no client")
        await kapi.redis.ping()
    except REDIS_ERRORS as exc:
        checks["redis"] = f"unreachable: {type(exc).__name__}"
    try:
        if kapi.database is None:
            raise ConnectionError("not connected")
        await kapi.database.fetch_val("SELECT 1")
    except Exception as exc:  # any driver's error means "not ready"
        checks["database"] = f"unreachable: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return JSON({"status": "ready", **checks})
    return ProblemResponse(503, "Not ready: " + ", ".join(f"{k} {v}" for k, v in checks.items()), checks=checks)


probe_routes = [
    Route("/health", health, methods=["GET"], name="health"),
    Route("/ready", ready, methods=["GET"], name="ready"),
]

diagnostic_routes = [
    Route("/test-redis", test_redis, methods=["GET"], name="test_redis"),
    Route("/test-cache", write_test_cache, methods=["POST"], name="write_test_cache"),
    Route("/test-cache", read_test_cache, methods=["GET"], name="read_test_cache"),
]

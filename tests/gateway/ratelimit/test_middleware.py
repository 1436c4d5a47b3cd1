"""RateLimitMiddleware on a tiny Starlette app (behind AuthMiddleware), against a real Redis."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from jose import jwt
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway import (
    AuthMiddleware,
    AuthRules,
    CircuitBreaker,
    ClientAddress,
    GatewayEvents,
    Policy,
    RateLimiter,
    RateLimitMiddleware,
    RateLimits,
    TokenVerifier,
    limit,
)
from gateway.ratelimit import QUOTA_EXCEEDED
from gateway.testing import RedisServer
from tests.gateway.conftest import redis_client
from tests.gateway.ratelimit.test_strategy import Clock, ClockedLimiter

pytestmark = pytest.mark.anyio
SECRET = "rate-limit-test-secret-0123456789-0123456789"


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


ROUTES = [
    Route("/items/{item_id}", ok),
    Route("/items", ok, methods=["GET", "POST"]),
    Route("/health", ok),
    Route("/login", ok, methods=["POST"]),
]


def token(sub: str = "u1", **claims: Any) -> str:
    now = int(time.time())
    base = {"sub": sub, "jti": f"j{time.monotonic_ns()}", "iat": now, "exp": now + 600, "type": "access", **claims}
    return str(jwt.encode(base, SECRET, algorithm="HS256"))


def rules(**options: Any) -> RateLimits:
    """``RateLimits`` from the options these tests vary (``policy`` is the chooser)."""
    if "policy" in options:
        options["choose"] = options.pop("policy")
    return RateLimits(**{"default": "5/minute", **options})


def limited(
    redis: Any, *, client_address: ClientAddress | None = None, clock: Clock | None = None, **options: Any
) -> Any:
    """Auth (no blacklist) then the rate limiter, as two separate middleware; with a ``clock``, the
    limiter's algorithm runs at the time it says instead of Redis's."""
    inner = RateLimitMiddleware(
        Starlette(routes=ROUTES),
        limiter=(
            ClockedLimiter(redis, clock)
            if clock is not None
            else RateLimiter(redis, breaker=CircuitBreaker(failure_threshold=1, reset_timeout=5))
        ),
        limits=rules(**options),
        routes=ROUTES,
        client_address=client_address,
    )
    return AuthMiddleware(
        inner, verifier=TokenVerifier(key=SECRET), rules=AuthRules(public=lambda scope: True), routes=ROUTES
    )


def client(app: Any, ip: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(ip, 5000)), base_url="http://t")


def auth(sub: str = "u1", **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(sub, **claims)}"}


async def test_headers_on_every_response_and_429_after_the_limit(redis: Redis) -> None:
    async with client(limited(redis)) as http:
        remaining = []
        for _ in range(5):
            response = await http.get("/items/1")
            assert response.status_code == 200
            assert response.headers["ratelimit-policy"] == '"default";q=5;w=60'
            assert response.headers["ratelimit-limit"] == "5"
            r = int(response.headers["ratelimit-remaining"])
            t = int(response.headers["ratelimit-reset"])
            assert response.headers["ratelimit"] == f'"default";r={r};t={t}'
            assert 1 <= t <= 63  # a unit frees at most one sub-window (3 s) later than in a sliding log
            remaining.append(r)
        assert remaining == [4, 3, 2, 1, 0]

        refused = await http.get("/items/1")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        body = refused.json()
        assert body["type"] == QUOTA_EXCEEDED and body["violated-policies"] == ["default"] and body["status"] == 429
        assert refused.headers["ratelimit-remaining"] == "0"
        t = int(refused.headers["ratelimit-reset"])
        assert int(refused.headers["retry-after"]) >= t >= 59


async def test_the_key_is_the_seed_name_with_the_route_template(redis: Redis) -> None:
    async with client(limited(redis)) as http:
        await http.get("/items/1", headers=auth("42"))
        await http.get("/items/2")
    keys = sorted([key.decode() async for key in redis.scan_iter("rate_limit:*")])
    assert keys == ["rate_limit:42:GET /items/{item_id}", "rate_limit:ip:127.0.0.1:GET /items/{item_id}"]
    assert 0 < await redis.pttl(keys[0]) <= 63_000  # the window plus one sub-window


async def test_budgets_are_per_user_per_endpoint_and_per_anonymous_ip(redis: Redis) -> None:
    app = limited(redis, default="2/minute")
    async with client(app) as http, client(app, ip="10.0.0.7") as other_ip:
        for path in ("/items/1", "/items/2"):  # one template, one budget
            assert (await http.get(path, headers=auth("alice"))).status_code == 200
        assert (await http.get("/items/3", headers=auth("alice"))).status_code == 429
        assert (await http.get("/items", headers=auth("alice"))).status_code == 200  # another endpoint
        assert (await http.post("/items", headers=auth("alice"))).status_code == 200  # another method
        assert (await http.get("/items/1", headers=auth("bob"))).status_code == 200  # another user
        for _ in range(2):
            assert (await http.get("/items/1")).status_code == 200
        assert (await http.get("/items/1")).status_code == 429  # anonymous, 127.0.0.1
        assert (await other_ip.get("/items/1")).status_code == 200  # anonymous, another address


async def test_refused_requests_do_not_consume_and_retry_after_is_the_real_wait(redis: Redis) -> None:
    clock = Clock()
    async with client(limited(redis, default="2/2second", clock=clock)) as http:
        assert [(await http.get("/items/1")).status_code for _ in range(2)] == [200, 200]
        refused = []
        for _ in range(10):  # hammering for 1.25 s does not extend the wait
            refused.append(await http.get("/items/1"))
            clock.now += 0.125
        assert {r.status_code for r in refused} == {429}
        retry_after = int(refused[0].headers["retry-after"])
        # The real wait: the 2 s window, plus up to one 0.1 s sub-window; Retry-After rounds it up.
        assert retry_after == 3
        assert [int(r.headers["retry-after"]) for r in refused] == [3] + [2] * 8 + [1]  # 2.1 s, counting down
        clock.now = 1002.09375
        assert (await http.get("/items/1")).status_code == 429  # not earlier than the real wait
        clock.now = 1000 + retry_after
        assert (await http.get("/items/1")).status_code == 200  # and free by Retry-After


async def test_no_window_of_the_limits_length_admits_more_than_the_limit(redis: Redis) -> None:
    clock = Clock()
    admitted: list[float] = []
    async with client(limited(redis, default="5/2second", clock=clock)) as http:
        for step in range(300):  # requests 1/128 s to 1/8 s apart, for 20 s
            clock.now += (1 + step * 7 % 16) / 128
            if (await http.get("/items/1")).status_code == 200:
                admitted.append(clock.now)
    assert len(admitted) >= 45  # it does let traffic through as windows slide (at most 50 in 20 s)
    for i, start in enumerate(admitted):
        in_window = [t for t in admitted[i:] if t - start <= 2]
        assert len(in_window) <= 5, admitted


async def test_several_limits_at_once(redis: Redis) -> None:
    clock = Clock()
    async with client(limited(redis, default="2/second;3/minute", clock=clock)) as http:
        first = await http.get("/items/1")
        assert first.headers["ratelimit-policy"] == '"default-1s";q=2;w=1, "default-60s";q=3;w=60'
        assert re.fullmatch(r'"default-1s";r=1;t=[12], "default-60s";r=2;t=6[0-3]', first.headers["ratelimit"])
        await http.get("/items/1")
        burst = await http.get("/items/1")
        assert burst.status_code == 429 and burst.json()["violated-policies"] == ["default-1s"]
        clock.now += 1.0625
        assert (await http.get("/items/1")).status_code == 200
        clock.now += 1.0625
        minute = await http.get("/items/1")
        assert minute.status_code == 429 and minute.json()["violated-policies"] == ["default-60s"]
        assert int(minute.headers["retry-after"]) >= 55


async def test_overrides_exemptions_and_per_request_policies(redis: Redis) -> None:
    def tier(scope: Any, user: str | None, endpoint: str) -> Policy | None:
        claims = getattr(scope.get("user"), "claims", {})
        return Policy.of("pro", "4/minute") if claims.get("tier") == "pro" else None

    app = limited(
        redis,
        default="1/minute",
        overrides={"POST /login": Policy.of("login-ip", "2/minute", by="ip")},
        exempt=["/health"],
        policy=tier,
    )
    async with client(app) as http:
        assert [(await http.get("/health")).status_code for _ in range(5)] == [200] * 5
        assert "ratelimit" not in (await http.get("/health")).headers
        statuses = [(await http.post("/login", headers=auth(f"user{i}"))).status_code for i in range(3)]
        assert statuses == [200, 200, 429]  # by address, whoever is signed in
        pro = [(await http.get("/items/1", headers=auth("p", tier="pro"))).status_code for _ in range(5)]
        assert pro == [200, 200, 200, 200, 429]
        free = [(await http.get("/items/1", headers=auth("f"))).status_code for _ in range(2)]
        assert free == [200, 429]


async def test_forwarded_for_is_believed_only_from_trusted_proxies(redis: Redis) -> None:
    trusting = limited(redis, default="1/minute", client_address=ClientAddress(["127.0.0.1"]))
    async with client(trusting) as via_proxy, client(trusting, ip="10.9.9.9") as direct:
        assert (await via_proxy.get("/items/1", headers={"X-Forwarded-For": "203.0.113.5"})).status_code == 200
        assert (await via_proxy.get("/items/1", headers={"X-Forwarded-For": "203.0.113.6"})).status_code == 200
        # a client that is not a trusted proxy cannot choose its identity
        assert (await direct.get("/items/1", headers={"X-Forwarded-For": "203.0.113.7"})).status_code == 200
        assert (await direct.get("/items/1", headers={"X-Forwarded-For": "203.0.113.8"})).status_code == 429
    keys = sorted([key.decode() async for key in redis.scan_iter("rate_limit:*")])
    assert keys == [
        "rate_limit:ip:10.9.9.9:GET /items/{item_id}",
        "rate_limit:ip:203.0.113.5:GET /items/{item_id}",
        "rate_limit:ip:203.0.113.6:GET /items/{item_id}",
    ]


@pytest.mark.parametrize("mode", ["local", "open", "closed"])
async def test_redis_paused_answers_within_the_timeout(own_redis_server: RedisServer, mode: str) -> None:
    redis = redis_client(own_redis_server.url, redis_timeout=0.1)
    app = limited(redis, default="3/minute", on_redis_error=mode)
    async with client(app) as http:
        assert (await http.get("/items/1")).status_code == 200
        own_redis_server.pause()
        try:
            started = time.monotonic()
            responses = [await http.get("/items/1") for _ in range(5)]
            elapsed = time.monotonic() - started
        finally:
            own_redis_server.resume()
    statuses = [r.status_code for r in responses]
    assert elapsed < 1.0  # one timeout, then the breaker skips Redis
    if mode == "local":  # an approximate limiter of this process's own (it has not seen the first hit)
        assert statuses == [200, 200, 200, 429, 429]
        assert responses[0].headers["ratelimit-policy"] == '"default";q=3;w=60'
    elif mode == "open":
        assert statuses == [200] * 5 and "ratelimit" not in responses[0].headers
    else:
        assert statuses == [503] * 5 and "retry-after" in responses[0].headers
    await redis.aclose()


async def test_override_and_exempt_names_are_checked_against_the_routes(redis: Redis) -> None:
    with pytest.raises(ValueError, match="overrides: 'POST /logn' matches no route"):
        limited(redis, overrides={"POST /logn": "10/minute"})
    with pytest.raises(ValueError, match="exempt: '/healthz'"):
        limited(redis, exempt=["/healthz"])
    with pytest.raises(TypeError, match="not one string"):
        limited(redis, exempt="/health")
    with pytest.raises(TypeError, match="not one string"):
        AuthRules(public="GET /items")
    limited(redis, overrides={"POST /login": "10/minute"}, exempt=["/health"])  # the real names are fine


class Recorded(GatewayEvents):
    def __init__(self) -> None:
        self.decisions: list[tuple[str, bool, bool]] = []

    def rate_limit_decision(self, policy: str, decision: Any, *, shadow: bool = False) -> None:
        self.decisions.append((policy, decision.admitted, shadow))


async def test_shadow_mode_decides_and_reports_but_refuses_nothing(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    events = Recorded()
    app = RateLimitMiddleware(
        Starlette(routes=ROUTES), limiter=RateLimiter(redis), limits=RateLimits(default="2/minute", shadow=True),
        routes=ROUTES, events=events,
    )  # fmt: skip
    async with client(app) as http:
        responses = [await http.get("/items/1") for _ in range(4)]
    assert [r.status_code for r in responses] == [200] * 4
    assert [r.headers["ratelimit-remaining"] for r in responses] == ["1", "0", "0", "0"]
    assert all("retry-after" not in r.headers for r in responses)
    assert events.decisions == [("default", True, True)] * 2 + [("default", False, True)] * 2
    assert sum("would refuse GET /items/1" in r.getMessage() for r in caplog.records) == 2


async def test_a_route_declares_its_limit_and_cost_next_to_it(redis: Redis) -> None:
    @limit("10/minute", cost=4)
    async def upload(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes = [Route("/upload", upload, methods=["POST"]), *ROUTES]
    app = RateLimitMiddleware(Starlette(routes=routes), limiter=RateLimiter(redis), routes=routes)
    async with client(app) as http:
        statuses = [(await http.post("/upload")).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]  # 4 + 4 of 10 units; a third 4 does not fit
        refused = await http.post("/upload")
        assert refused.headers["ratelimit-policy"] == '"POST /upload";q=10;w=60'
        assert refused.headers["ratelimit-remaining"] == "2"
        assert (await http.get("/items/1")).headers["ratelimit-limit"] == "100"  # other routes: the default

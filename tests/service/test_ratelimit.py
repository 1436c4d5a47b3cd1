"""The service's rate limits: default per user and endpoint, strict sign-in limits, Redis cost."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer
from service.app import create_app
from tests.conftest import PHONE_A, PHONE_B, PHONE_C, bearer, http_client, login, make_settings
from tests.monitor import client_commands

pytestmark = pytest.mark.anyio


async def test_default_limit_and_headers_on_listing_reads(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path, rate_limit="3/hour"))
    async with app.router.lifespan_context(app), http_client(app) as client:
        for remaining in (2, 1, 0):
            response = await client.get("/listings/1")
            assert response.status_code == 404  # limited like any other answer
            assert response.headers["ratelimit"].startswith(f'"default";r={remaining};t=')
            assert response.headers["ratelimit-policy"] == '"default";q=3;w=3600'
        assert (await client.get("/listings/2")).status_code == 429
        assert (await client.get("/health")).status_code == 200  # exempt
        assert "ratelimit" not in (await client.get("/metrics")).headers
    assert await redis.exists("rate_limit:ip:127.0.0.1:GET /listings/{listing_id}")


async def test_otp_is_limited_per_phone_and_per_address(anon: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await anon.post("/auth/otp", json={"phone": PHONE_B})).status_code == 202
    refused = await anon.post("/auth/otp", json={"phone": PHONE_B})
    assert refused.status_code == 429 and refused.json()["violated-policies"] == ["otp-phone"]
    assert refused.headers["ratelimit-policy"] == '"otp-phone";q=5;w=3600, "otp-ip";q=20;w=3600'
    assert refused.headers["ratelimit"].startswith('"otp-phone";r=0;t=')
    assert (refused.headers["ratelimit-limit"], refused.headers["ratelimit-remaining"]) == ("5", "0")
    assert int(refused.headers["retry-after"]) > 3500

    for i in range(14):  # 6 already used from this address: 20 per hour in all
        phone = f"+9055500001{i:02d}"
        assert (await anon.post("/auth/otp", json={"phone": phone})).status_code in (202, 422)
    by_address = await anon.post("/auth/otp", json={"phone": PHONE_C})
    assert by_address.status_code == 429 and by_address.json()["violated-policies"] == ["otp-ip"]


async def test_login_is_limited_per_address(anon: httpx.AsyncClient) -> None:
    await anon.post("/auth/otp", json={"phone": PHONE_A})
    statuses = [
        (await anon.post("/auth/login/phone", json={"phone": PHONE_A, "code": "000000"})).status_code for _ in range(11)
    ]
    assert statuses[:4] == [400] * 4  # wrong codes (the fifth locks the code: also 400)
    assert statuses[-1] == 429  # the eleventh attempt in a minute from one address


async def test_pro_tier_claim_gets_its_own_limit(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    settings = make_settings(redis_server.url, tmp_path, rate_limit="1/hour", rate_limit_tiers="pro:3/hour")
    app = create_app(settings)
    async with app.router.lifespan_context(app), http_client(app) as client:
        kapi = app.state.kapi
        pair = await kapi.sign_in.open_session("77", ip="127.0.0.1", user_agent="t")
        pro_token = kapi.issuer.encode({**pair.access, "tier": "pro", "jti": "pro-jti"})
        statuses = [(await client.get("/listings", headers={"Authorization": f"Bearer {pro_token}"})).status_code
                    for _ in range(4)]  # fmt: skip
        assert statuses == [200, 200, 200, 429]
        assert (await client.get("/listings", headers=bearer({"access_token": pair.access_token}))).status_code == 429


async def test_a_warm_listing_read_with_a_token_costs_no_redis_command(
    redis_server: RedisServer, client: httpx.AsyncClient
) -> None:
    """LOCAL_DECISIONS (the default): the token is in the revocation view and the budget (1000/hour
    here: up to 10 units at a time) is reserved ahead, so most warm reads send Redis nothing."""
    listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"})).json()
    for _ in range(2):
        await client.get(f"/listings/{listing['id']}")  # warm Redis, then the near cache
    async with client_commands(redis_server.url) as seen:
        remaining = []
        for _ in range(50):
            response = await client.get(f"/listings/{listing['id']}")
            assert response.headers["x-cache"] == "HIT-LOCAL"
            assert response.json()["title"] == "x"
            remaining.append(int(response.headers["ratelimit"].split("r=")[1].split(";")[0]))
    # The warm-up's reads took 1, then 2 units; then 4, 8, and 10 (1 % of the limit) at a time, each
    # taken when fewer than half are left: 7 round trips for 50 requests.
    assert seen.names() == ["EVALSHA"] * 7
    # One process: what it holds plus what Redis says is left is exactly what is left.
    assert remaining == list(range(remaining[0], remaining[0] - 50, -1))


async def test_with_local_decisions_off_a_warm_read_costs_one_redis_command(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path, local_decisions=False))
    async with app.router.lifespan_context(app), http_client(app) as client:
        client.headers.update(bearer(await login(client)))
        listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"})).json()
        for _ in range(2):
            await client.get(f"/listings/{listing['id']}")
        async with client_commands(redis_server.url) as seen:
            for _ in range(5):
                response = await client.get(f"/listings/{listing['id']}")
                assert response.headers["x-cache"] == "HIT-LOCAL"
    assert seen.names() == ["EVALSHA"] * 5  # the gateway step (revocation + limit) only


async def test_without_the_near_cache_a_warm_read_costs_two(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path, near_cache=False, local_decisions=False))
    async with app.router.lifespan_context(app), http_client(app) as client:
        headers = bearer(await login(client))
        listing = (await client.post("/listings", json={"title": "x", "price": "1", "city": "Ankara"},
                                     headers=headers)).json()  # fmt: skip
        await client.get(f"/listings/{listing['id']}", headers=headers)
        async with client_commands(redis_server.url) as seen:
            for _ in range(5):
                response = await client.get(f"/listings/{listing['id']}", headers=headers)
                assert response.headers["x-cache"] == "HIT"  # never HIT-LOCAL: no copies in process memory
        # The tracking channel is still there: the stream guard follows revocations on it.
        assert [c for c in await redis.client_list() if c["name"] == "kapi-near-cache"]
    assert seen.names() == ["EVALSHA", "EVALSHA"] * 5  # gateway, then the cache


async def test_shadow_mode_and_the_near_limit_signal_in_metrics(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(redis_server.url, tmp_path, rate_limit="10/hour", rate_limit_shadow=True))
    async with app.router.lifespan_context(app), http_client(app) as client:
        statuses = [(await client.get("/listings")).status_code for _ in range(12)]
        assert statuses == [200] * 12  # a shadow limit refuses nothing...
        text = (await client.get("/metrics")).text
    # ...but decides, counts and logs: 10 admitted, 2 it would have refused; near the limit from the 9th on.
    assert 'kapi_rate_limit_decisions_total{decision="admitted",policy="default"} 10.0' in text
    assert 'kapi_rate_limit_decisions_total{decision="shadow_refused",policy="default"} 2.0' in text
    assert 'kapi_rate_limit_near_limit_total{policy="default"} 2.0' in text
    assert sum("rate limit (shadow) default would refuse GET /listings" in r.getMessage() for r in caplog.records) == 2

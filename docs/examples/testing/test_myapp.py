"""Tests of myapp against a real Redis, from Kapı's pytest fixtures."""

import httpx
import pytest
from myapp import create_app
from redis.asyncio import Redis

from gateway import TokenBlacklist, TokenIssuer

pytestmark = pytest.mark.anyio
SECRET = "a-secret-for-the-tests-only"


async def sign_in(redis, user: str):
    await TokenBlacklist(redis).ensure_epoch()  # tokens issued from now on pass
    return TokenIssuer(key=SECRET).issue_pair(user, session_id="test")


def client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_a_logged_out_token_is_refused(kapi_redis):
    app = create_app(kapi_redis, secret=SECRET)  # kapi_redis: an empty database
    pair = await sign_in(kapi_redis, "ayse")
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    async with client(app) as http:
        assert (await http.get("/me", headers=headers)).json() == {"user": "ayse"}
        await TokenBlacklist(kapi_redis).revoke(pair.access)
        assert (await http.get("/me", headers=headers)).status_code == 401


async def test_the_fourth_request_in_a_minute_is_refused(kapi_redis):
    app = create_app(kapi_redis, secret=SECRET)
    pair = await sign_in(kapi_redis, "emre")
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    async with client(app) as http:
        answers = [await http.get("/me", headers=headers) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    assert answers[3].headers["retry-after"]


async def test_a_token_gets_503_while_redis_is_away(kapi_own_redis_server):
    redis = Redis.from_url(kapi_own_redis_server.url, socket_timeout=0.2)
    app = create_app(redis, secret=SECRET)
    pair = await sign_in(redis, "can")
    headers = {"Authorization": f"Bearer {pair.access_token}"}
    async with client(app) as http:
        assert (await http.get("/me", headers=headers)).status_code == 200
        kapi_own_redis_server.pause()  # a Redis that stops answering (kill() ends it)
        try:
            refused = await http.get("/me", headers=headers)
        finally:
            kapi_own_redis_server.resume()
    assert refused.status_code == 503  # a token that cannot be checked never passes
    await redis.aclose()

"""SessionStore: each login expires on its own after SESSION_TTL without use; an active one never lapses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from gateway import AuthMiddleware, SessionStore, TokenBlacklist, TokenIssuer, TokenVerifier
from gateway.sessions import Rotation, SessionTiming

pytestmark = pytest.mark.anyio
SECRET = "session-test-secret-0123456789-0123456789"


@requires("authenticated")
async def me(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.user.identity)


def app_for(redis: Redis, ttl: int) -> Any:
    routes = [Route("/me", me)]
    return AuthMiddleware(
        Starlette(routes=routes),
        verifier=TokenVerifier(key=SECRET),
        blacklist=TokenBlacklist(redis, sessions=SessionStore(redis, ttl=ttl)),
        routes=routes,
    )


async def login(store: SessionStore, user: str, sid: str) -> Any:
    pair = TokenIssuer(key=SECRET).issue_pair(user, session_id=sid)
    await store.open(user, sid, refresh_jti=pair.refresh["jti"], ip="127.0.0.1", user_agent=sid)
    return pair


@pytest.fixture(autouse=True)
async def long_running_redis(redis: Redis) -> None:
    await redis.set("epoch", 0)


async def test_the_touch_interval_is_small_against_the_ttl() -> None:
    assert SessionTiming.of(86400) == SessionTiming(touch_ms=60_000, idle_ms=86_460_000)
    assert SessionTiming.of(1) == SessionTiming(touch_ms=100, idle_ms=1_100)


async def test_an_idle_login_lapses_while_the_same_users_active_login_stays(redis: Redis) -> None:
    store = SessionStore(redis, ttl=1)
    phone, laptop = await login(store, "7", "phone"), await login(store, "7", "laptop")
    app = app_for(redis, ttl=1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        started = time.monotonic()
        while time.monotonic() - started < 3:  # the laptop is used every 0.4 s, for three SESSION_TTLs
            response = await http.get("/me", headers={"Authorization": f"Bearer {laptop.access_token}"})
            assert response.status_code == 200, "an active login never lapses"
            await asyncio.sleep(0.4)
        idle = await http.get("/me", headers={"Authorization": f"Bearer {phone.access_token}"})
        assert idle.status_code == 401 and "session has ended" in idle.json()["detail"]
    assert [s.session_id for s in await store.load("7")] == ["laptop"]
    assert await store.rotate("7", "phone", presented_jti=phone.refresh["jti"], new_jti="x") is Rotation.NO_SESSION


async def test_a_lapsed_login_cannot_refresh_and_is_not_listed(redis: Redis) -> None:
    store = SessionStore(redis, ttl=1)
    pair = await login(store, "8", "s1")
    assert [s.session_id for s in await store.load("8")] == ["s1"]
    await asyncio.sleep(1.25)  # past SESSION_TTL plus one touch interval
    assert await store.load("8") == []
    assert await store.rotate("8", "s1", presented_jti=pair.refresh["jti"], new_jti="n") is Rotation.NO_SESSION


async def test_a_sid_cannot_pose_as_another_logins_fields(redis: Redis) -> None:
    store = SessionStore(redis)
    await login(store, "9", "a")
    await login(store, "9", "a:seen")  # would once have been login "a"'s last-seen field
    await login(store, "9", "a:b")
    listed = sorted(s.session_id for s in await store.load("9"))
    assert listed == ["a", "a:b", "a:seen"]
    assert await store.end("9", "a:seen") is True
    assert sorted(s.session_id for s in await store.load("9")) == ["a", "a:b"]


async def test_logout_is_one_step_and_repeatable(redis: Redis) -> None:
    store = SessionStore(redis)
    pair = await login(store, "10", "s")
    blacklist = TokenBlacklist(redis)
    for _ in range(2):
        ttl = await store.end_and_revoke(
            "10", "s", blacklist_key=blacklist.blacklist_key(pair.access), exp=pair.access["exp"],
            leeway=blacklist.leeway, max_ttl=blacklist.max_ttl,
        )  # fmt: skip
        assert 86428 <= ttl <= 86430
    assert await store.load("10") == []
    assert await redis.exists(blacklist.blacklist_key(pair.access)) == 1

"""Local decisions across instances, as deployed (LOCAL_DECISIONS, on by default): two service
processes (the Procfile's line) on one Redis. A token warm in one instance's revocation view, with
budget reserved there, is refused by it the moment a revocation through the other instance has
answered: a logout, a log-out-everywhere, an ended session; also when the push channel was killed
just before, and after Redis came back empty."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis import Redis

from gateway.redis_keys import Keys
from gateway.sessions import SessionStore
from gateway.testing import RedisServer
from gateway.tokens import TokenIssuer, new_id
from tests.conftest import TEST_SECRET
from tests.processes import ServiceProcess, service_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

ROUNDS = 200


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def services(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    tmp = Path(tmp_path_factory.mktemp("local"))
    env = service_env(redis_server.url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}", rate_limit="100000/hour")
    with ServiceProcess(env, cwd=tmp) as first, ServiceProcess(env, cwd=tmp) as second:
        yield first, second


async def mint(redis_server: RedisServer, user: str) -> tuple[str, str]:
    """A token and its login, made as sign-in makes them (the service's secret, a session in Redis)."""
    from redis.asyncio import Redis as AsyncRedis

    client = AsyncRedis.from_url(redis_server.url)
    try:
        session_id = new_id()
        pair = TokenIssuer(key=TEST_SECRET).issue_pair(user, session_id=session_id)
        await SessionStore(client, keys=Keys()).open(
            user, session_id, refresh_jti=pair.refresh["jti"], ip="127.0.0.1", user_agent="test"
        )
    finally:
        await client.aclose()
    return pair.access_token, session_id


def view_hits(service: ServiceProcess) -> float:
    text = httpx.get(f"{service.url}/metrics").text
    match = re.search(r'^kapi_revocation_view_events_total\{event="hits"\} (\S+)$', text, re.M)
    assert match, "no revocation view metric"
    return float(match.group(1))


async def warm(http: httpx.AsyncClient, token: str) -> None:
    for _ in range(3):  # the first is checked in Redis; then the view and a reservation answer
        assert (await http.get("/listings", headers={"Authorization": f"Bearer {token}"})).status_code == 200


@pytest.mark.parametrize("revocation", ["logout", "logout_all", "end_session"])
async def test_a_revocation_through_one_instance_refuses_at_once_on_the_other(
    services: Any, redis_server: RedisServer, revocation: str
) -> None:
    first, second = services
    rounds = ROUNDS if revocation == "logout" else ROUNDS // 4
    hits_before = view_hits(second)
    admitted = []
    async with httpx.AsyncClient(base_url=first.url) as a, httpx.AsyncClient(base_url=second.url) as b:
        for round_number in range(rounds):
            token, session_id = await mint(redis_server, f"user-{revocation}-{round_number}")
            auth = {"Authorization": f"Bearer {token}"}
            await warm(b, token)
            if revocation == "logout":
                answer = await a.post("/auth/logout", headers=auth)
            elif revocation == "logout_all":
                answer = await a.post("/auth/logout/all", headers=auth)
            else:
                answer = await a.delete(f"/auth/session/{session_id}", headers=auth)
            assert answer.status_code == 204, answer.text
            after = await b.get("/listings", headers=auth)  # right after the reply, through the other instance
            if after.status_code != 401:
                admitted.append((round_number, after.status_code))
    assert admitted == []
    # The warm requests were answered from the view (else this test would prove nothing).
    assert view_hits(second) - hits_before >= rounds


async def test_a_killed_channel_just_before_a_revocation_does_not_let_the_token_pass(
    services: Any, redis_server: RedisServer
) -> None:
    first, second = services
    control = Redis.from_url(redis_server.url)
    async with httpx.AsyncClient(base_url=first.url) as a, httpx.AsyncClient(base_url=second.url) as b:
        for round_number in range(20):
            token, _ = await mint(redis_server, f"user-kill-{round_number}")
            auth = {"Authorization": f"Bearer {token}"}
            await warm(b, token)
            for client in control.client_list():
                if client["name"] == "kapi-near-cache":
                    control.client_kill_filter(_id=client["id"])
            assert (await a.post("/auth/logout", headers=auth)).status_code == 204
            assert (await b.get("/listings", headers=auth)).status_code == 401
    control.close()


async def test_after_redis_comes_back_empty_a_revoked_token_stays_refused(
    services: Any, redis_server: RedisServer
) -> None:
    first, second = services
    async with httpx.AsyncClient(base_url=first.url) as a, httpx.AsyncClient(base_url=second.url) as b:
        token, _ = await mint(redis_server, "user-restart")
        auth = {"Authorization": f"Bearer {token}"}
        await warm(b, token)
        assert (await a.post("/auth/logout", headers=auth)).status_code == 204
        redis_server.restart(empty=True)  # the blacklist entry is gone with everything else
        statuses = [(await b.get("/listings", headers=auth)).status_code for _ in range(5)]
    assert 200 not in statuses and 401 in statuses  # 503 while the client reconnects, then 401 (the epoch)


async def test_a_login_used_through_the_view_stays_alive_and_an_idle_one_still_lapses(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """SESSION_TTL=1 (use recorded every 0.1 s, lapse after 1.1 s idle): requests admitted from the view
    still record use, so steady use outlives the TTL; then an idle pause ends the login."""
    import asyncio

    from service.app import create_app
    from tests.conftest import bearer, http_client, login, make_settings

    app = create_app(make_settings(redis_server.url, tmp_path, session_ttl=1, rate_limit="100000/hour"))
    async with app.router.lifespan_context(app), http_client(app) as client:
        headers = bearer(await login(client))
        statuses = []
        for _ in range(50):  # 2.5 s of steady use, past the TTL
            statuses.append((await client.get("/listings", headers=headers)).status_code)
            await asyncio.sleep(0.05)
        metrics = (await client.get("/metrics")).text
        hits = float(re.search(r'^kapi_revocation_view_events_total\{event="hits"\} (\S+)$', metrics, re.M)[1])  # type: ignore[index]
        await asyncio.sleep(1.5)  # idle past the TTL and one touch interval
        lapsed = await client.get("/listings", headers=headers)
    assert statuses == [200] * 50
    assert hits >= 10  # admitted from the view between touches (an entry lasts one touch interval, 0.1 s here)
    assert lapsed.status_code == 401 and "session" in lapsed.json()["detail"]

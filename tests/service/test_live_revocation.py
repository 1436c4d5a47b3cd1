"""The service's live feed under the gate, as deployed: two service processes (the Procfile's line) on
one Redis (standalone, a 3-master Cluster, or Sentinel with a replica); a feed opened on one is closed
within a second when its token is logged out through the other, as a WebSocket and as SSE; an
anonymous handshake is refused before accept."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway.testing import RedisCluster, RedisServer
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ServiceProcess, service_env
from tests.sentinel import sentinel_setup

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@contextlib.contextmanager
def redis_of(topology: str, tmp: Path) -> Iterator[dict[str, Any]]:
    """A real Redis of that topology, and the settings that point the service at it."""
    if topology == "standalone":
        with RedisServer() as redis:
            yield {"redis_url": redis.url}
    elif topology == "cluster":
        with RedisCluster(masters=3) as cluster:
            yield {"redis_url": cluster.url, "redis_mode": "cluster"}
    else:
        with sentinel_setup(tmp) as (_, _, port):
            yield {"redis_url": "", "redis_mode": "sentinel", "redis_sentinels": f"127.0.0.1:{port}"}


@pytest.fixture(scope="module", params=["standalone", "cluster", "sentinel"])
def services(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcess, ServiceProcess]]:
    tmp = Path(tmp_path_factory.mktemp("live"))
    with redis_of(request.param, tmp) as redis:
        url = redis.pop("redis_url")
        env = service_env(url, f"sqlite+aiosqlite:///{tmp / 'kapi.db'}", rate_limit="100000/hour", **redis)
        with ServiceProcess(env, cwd=tmp) as first, ServiceProcess(env, cwd=tmp) as second:
            yield first, second


def sign_in(service: ServiceProcess) -> str:
    assert httpx.post(f"{service.url}/auth/otp", json={"phone": PHONE_A}).status_code == 202
    signed_in = httpx.post(f"{service.url}/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A})
    token: str = signed_in.json()["access_token"]
    return token


async def test_an_anonymous_feed_handshake_is_refused_before_accept(services: Any) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(services[0].url.replace("http", "ws") + "/listings/events"):
            pass
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["WWW-Authenticate"] == 'Bearer realm="kapi"'


async def test_a_logout_on_one_instance_closes_feeds_on_the_other_within_a_second(services: Any) -> None:
    first, second = services
    token = sign_in(first)
    auth = {"Authorization": f"Bearer {token}"}
    ws_url = second.url.replace("http", "ws") + "/listings/events"
    async with (
        connect(ws_url, additional_headers=auth) as ws,
        httpx.AsyncClient(base_url=second.url, timeout=10) as http,
        http.stream("GET", "/listings/events", headers={**auth, "Accept": "text/event-stream"}) as sse,
    ):
        assert sse.status_code == 200
        lines = sse.aiter_lines()
        await asyncio.sleep(0.3)  # both are open and followed
        async with httpx.AsyncClient(base_url=first.url) as other:
            assert (await other.post("/auth/logout", headers=auth)).status_code == 204
        replied = time.monotonic()
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(1.0):
                while True:
                    await ws.recv()
        closed_at = time.monotonic() - replied
        async with asyncio.timeout(1.0):
            rest = [line async for line in lines]
        ended_at = time.monotonic() - replied
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "The token has been revoked.")
    assert closed_at < 1.0 and ended_at < 1.0
    assert "event: close" in rest
    data = orjson.loads(rest[rest.index("event: close") + 1].removeprefix("data: "))
    assert data == {"type": "close", "reason": "The token has been revoked.", "retry": False}

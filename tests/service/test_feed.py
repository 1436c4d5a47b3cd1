"""Live listing changes (``GET /listings/events``), seen by real clients: a WebSocket client (the
``websockets`` package) and an SSE client (httpx) against uvicorn as the Procfile runs it, on a
redis-server of this module's own. Every write made over HTTP arrives, in order, on both; the city
filter is Turkish-aware; a client that reconnects with its last event id gets what it missed (or a
``reset`` when that is no longer kept); a write through one instance reaches a feed on another.
In-process: a slow feed is closed, and writes made while Redis was away end in a ``reset``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from gateway.testing import RedisServer
from service.app import create_app
from service.feed import FELL_BEHIND, LOST_WRITES, TRIMMED, UNKNOWN_ID, Change, Closed, Feed
from service.state import Kapi
from tests.conftest import CODE_A, CODE_B, PHONE_A, PHONE_B, bearer, login, make_settings, serve
from tests.processes import ServiceProcess, service_env

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

STREAM = "listings:events"
WAIT = 5.0  # seconds any one event may take to arrive


@pytest.fixture(scope="module")
def redis_server_of_module() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def services(redis_server_of_module: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two service processes on one Redis and one database, SSE heartbeat every 0.5 s."""
    tmp = Path(tmp_path_factory.mktemp("feed"))
    env = service_env(
        redis_server_of_module.url,
        f"sqlite+aiosqlite:///{tmp / 'kapi.db'}",
        rate_limit="100000/hour",
        feed_heartbeat=0.5,
    )
    with ServiceProcess(env, cwd=tmp) as first, ServiceProcess(env, cwd=tmp) as second:
        yield first, second


@pytest.fixture(scope="module")
def tokens(services: Any) -> dict[str, str]:
    """An access token for each of two users, signed in once (sign-in is limited per phone number)."""
    found = {}
    for phone, code in ((PHONE_A, CODE_A), (PHONE_B, CODE_B)):
        assert httpx.post(f"{services[0].url}/auth/otp", json={"phone": phone}).status_code == 202
        signed_in = httpx.post(f"{services[0].url}/auth/login/phone", json={"phone": phone, "code": code})
        found[phone] = signed_in.json()["access_token"]
    return found


@pytest.fixture
async def http(services: Any, tokens: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """PHONE_A's client on the first service."""
    headers = {"Authorization": f"Bearer {tokens[PHONE_A]}"}
    async with httpx.AsyncClient(base_url=services[0].url, headers=headers, timeout=10) as client:
        yield client


class Sse:
    """An SSE client on one open response: ``next()`` is the next event (``id``, ``event``, ``data``
    parsed), ``comments`` what came as comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self, wait: float = WAIT) -> dict[str, Any]:
        async with asyncio.timeout(wait):
            event: dict[str, Any] = {}
            async for line in self.lines:
                if not line:
                    if event:
                        return event
                    continue
                if line.startswith(":"):
                    self.comments.append(line)
                    continue
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                event[name] = orjson.loads(value) if name == "data" else value
            raise EOFError("the stream ended")


@contextlib.asynccontextmanager
async def sse(base: str, token: str, *, query: str = "", **headers: str) -> AsyncIterator[Sse]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", **headers}
    async with (
        httpx.AsyncClient(base_url=base, timeout=10) as client,
        client.stream("GET", f"/listings/events{query}", headers=headers) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Sse(response)


@contextlib.asynccontextmanager
async def websocket(base: str, token: str, *, query: str = "") -> AsyncIterator[ClientConnection]:
    url = base.replace("http://", "ws://") + f"/listings/events{query}"
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=5) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        message = await ws.recv()
    event: dict[str, Any] = orjson.loads(message)
    return event


def token_of(http: httpx.AsyncClient) -> str:
    return http.headers["authorization"].removeprefix("Bearer ")


async def create(http: httpx.AsyncClient, city: str = "İzmir", title: str = "bisiklet") -> dict[str, Any]:
    created = await http.post("/listings", json={"title": title, "price": "10", "city": city})
    assert created.status_code == 201, created.text
    listing: dict[str, Any] = created.json()
    return listing


async def get_json(http: httpx.AsyncClient, listing_id: int) -> Any:
    return orjson.loads((await http.get(f"/listings/{listing_id}")).content)


async def test_websocket_and_sse_get_every_write_in_order(services: Any, http: httpx.AsyncClient) -> None:
    base, token = services[0].url, token_of(http)
    async with websocket(base, token) as ws, sse(base, token) as stream:
        listing = await create(http)
        path = f"/listings/{listing['id']}"
        created = await get_json(http, listing["id"])
        assert (await http.patch(path, json={"price": "12.50"})).status_code == 200
        updated = await get_json(http, listing["id"])
        assert (await http.delete(path)).status_code == 204

        expected = [
            {"type": "created", "id": listing["id"], "listing": created},
            {"type": "updated", "id": listing["id"], "listing": updated},
            {"type": "deleted", "id": listing["id"], "listing": None},
        ]
        messages = [await receive(ws) for _ in expected]
        events = [await stream.next() for _ in expected]
    assert [{k: v for k, v in m.items() if k != "event_id"} for m in messages] == expected
    assert [event["data"] for event in events] == expected  # the listing exactly as GET returns it
    assert [m["event_id"] for m in messages] == [event["id"] for event in events]  # the stream's entry ids
    assert all("event" not in event for event in events)  # default event type: EventSource.onmessage sees them


async def test_writes_by_anyone_in_write_order(services: Any, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
    """Two writers at once; each feed sees the writes in one order, the stream's, and both feeds the same."""
    headers = {"Authorization": f"Bearer {tokens[PHONE_B]}"}
    async with httpx.AsyncClient(base_url=services[1].url, headers=headers, timeout=10) as other:
        base, token = services[0].url, token_of(http)
        async with websocket(base, token) as ws, sse(services[1].url, token) as stream:
            results = await asyncio.gather(*[create(http, title=f"a{i}") for i in range(10)],
                                           *[create(other, title=f"b{i}") for i in range(10)])  # fmt: skip
            messages = [await receive(ws) for _ in results]
            events = [await stream.next() for _ in results]
    assert sorted(m["id"] for m in messages) == sorted(listing["id"] for listing in results)
    ids = [m["event_id"] for m in messages]
    assert ids == [event["id"] for event in events]
    assert ids == sorted(ids, key=lambda text: tuple(int(part) for part in text.split("-")))
    assert {m["listing"]["owner_id"] for m in messages} == {r["owner_id"] for r in results} and len(
        {r["owner_id"] for r in results}
    ) == 2


async def test_city_filter_is_turkish_aware(services: Any, http: httpx.AsyncClient) -> None:
    base, token = services[0].url, token_of(http)
    async with websocket(base, token, query="?city=ISTANBUL") as ws, sse(base, token, query="?city=istanbul") as stream:
        ankara = await create(http, city="Ankara")
        istanbul = await create(http, city="İstanbul")
        # Leaving the city is news to its feeds (they hear it by the old city); after that, it is Ankara's.
        assert (await http.patch(f"/listings/{istanbul['id']}", json={"city": "Ankara"})).status_code == 200
        assert (await http.patch(f"/listings/{istanbul['id']}", json={"title": "x"})).status_code == 200
        assert (await http.delete(f"/listings/{ankara['id']}")).status_code == 204
        back = await create(http, city="  istanbul ")  # a write after the ones filtered out, so we know they were
        wanted = [("created", istanbul["id"]), ("updated", istanbul["id"]), ("created", back["id"])]
        messages = [await receive(ws) for _ in wanted]
        events = [(await stream.next())["data"] for _ in wanted]
    assert [(m["type"], m["id"]) for m in messages] == wanted
    assert [(e["type"], e["id"]) for e in events] == wanted
    assert messages[1]["listing"]["city"] == "Ankara"


async def test_resume_with_last_event_id(services: Any, http: httpx.AsyncClient) -> None:
    base, token = services[0].url, token_of(http)
    async with sse(base, token) as stream:
        first = await create(http)
        seen = await stream.next()
    assert seen["data"]["id"] == first["id"]
    missed = [await create(http, title=f"missed {i}") for i in range(3)]
    async with sse(base, token, **{"Last-Event-ID": seen["id"]}) as stream:
        events = [await stream.next() for _ in missed]
        live = await create(http, title="live")
        after = await stream.next()
    assert [event["data"]["id"] for event in events] == [listing["id"] for listing in missed]
    assert after["data"]["id"] == live["id"]
    # A WebSocket resumes the same way, with the query parameter; the city filter applies to what it missed.
    async with websocket(base, token, query=f"?last_event_id={seen['id']}&city=izmir") as ws:
        messages = [await receive(ws) for _ in range(4)]
    assert [m["id"] for m in messages] == [listing["id"] for listing in [*missed, live]]


async def test_resume_from_an_event_no_longer_kept_is_a_reset(
    services: Any, http: httpx.AsyncClient, redis_server_of_module: RedisServer
) -> None:
    base, token = services[0].url, token_of(http)
    async with websocket(base, token) as ws:
        await create(http)
        old = (await receive(ws))["event_id"]
    redis = Redis.from_url(redis_server_of_module.url)
    try:
        await create(http)
        await redis.xtrim(STREAM, maxlen=0)  # (as MAXLEN does to the oldest entries)
        tail = (await redis.xinfo_stream(STREAM))["last-generated-id"].decode()
    finally:
        await redis.aclose()
    async with sse(base, token, **{"Last-Event-ID": old}) as stream:
        reset = await stream.next()
        later = await create(http)
        after = await stream.next()
    assert reset == {"id": tail, "event": "reset", "data": {"type": "reset", "reason": TRIMMED}}
    assert after["data"]["id"] == later["id"]
    async with websocket(base, token, query="?last_event_id=99999999999999-0") as ws:  # never given by this stream
        message = await receive(ws)
    assert message["type"] == "reset" and message["reason"] == UNKNOWN_ID


async def test_a_write_through_one_instance_reaches_a_feed_on_the_other(services: Any, http: httpx.AsyncClient) -> None:
    second = services[1]
    async with websocket(second.url, token_of(http)) as ws, sse(second.url, token_of(http)) as stream:
        listing = await create(http)  # through the first
        assert (await receive(ws))["id"] == listing["id"]
        assert (await stream.next())["data"]["id"] == listing["id"]


async def test_sse_sends_a_heartbeat_comment(services: Any, http: httpx.AsyncClient) -> None:
    async with sse(services[0].url, token_of(http)) as stream:
        with pytest.raises(TimeoutError):
            await stream.next(wait=1.4)  # FEED_HEARTBEAT=0.5 in this module
    assert stream.comments.count(": ping") >= 2


async def test_what_is_not_a_feed_request(services: Any, http: httpx.AsyncClient) -> None:
    for accept in ("application/json", "*/*", "text/event-stream;q=0"):
        refused = await http.get("/listings/events", headers={"Accept": accept})
        assert refused.status_code == 406 and refused.headers["content-type"] == "application/problem+json"
    stream = {"Accept": "text/event-stream"}
    assert (await http.get("/listings/events?last_event_id=yesterday", headers=stream)).status_code == 422
    assert (await http.get("/listings/events", headers={**stream, "Last-Event-ID": "1-2-3"})).status_code == 422
    assert (await http.get("/listings/events?city=" + "x" * 101, headers=stream)).status_code == 422
    anonymous = await httpx.AsyncClient(base_url=services[0].url).get("/listings/events", headers=stream)
    assert anonymous.status_code == 401  # the gateway's rule for every route that is not public
    assert (await http.get("/listings/events/", headers=stream)).status_code == 307
    for method in ("PATCH", "DELETE", "POST"):  # not /listings/{listing_id}'s "no listing 'events'"
        other = await http.request(method, "/listings/events")
        assert other.status_code == 405 and other.headers["allow"] == "GET, HEAD", method
    with pytest.raises(InvalidStatus) as denied:  # refused before the handshake is accepted, with the problem
        async with websocket(services[0].url, token_of(http), query="?last_event_id=yesterday"):
            pass
    assert denied.value.response.status_code == 422
    document = (await http.get("/openapi.json")).json()
    operation = document["paths"]["/listings/events"]["get"]
    assert "text/event-stream" in operation["responses"]["200"]["content"]
    assert operation["x-websocket"]["path"] == "/listings/events"


# In-process: the parts a real client cannot easily reach.


@pytest.fixture
async def running_feed(redis: Redis, redis_server: RedisServer) -> AsyncIterator[Feed]:
    feed = Feed(redis=redis, stream=STREAM, max_len=1000, buffer=3, block=0.5)
    await feed.start()
    yield feed
    await feed.aclose()


async def publish(redis: Redis, feed: Feed, listing_id: int, city: str = "İzmir") -> None:
    change = Change("created", listing_id, {"id": listing_id, "city": city}, [city])
    publication = feed.publication(change)
    await redis.xadd(publication.stream, dict(publication.fields))  # type: ignore[arg-type]


async def test_a_feed_that_falls_behind_is_closed(redis: Redis, running_feed: Feed) -> None:
    slow = await running_feed.subscribe()
    keeping_up = await running_feed.subscribe()
    for listing_id in range(1, 6):
        await publish(redis, running_feed, listing_id)
        event = await keeping_up.next(idle=WAIT)
        assert event is not None and event.type == "created"
    with pytest.raises(Closed) as closed:
        await slow.next()
    assert closed.value.reason == FELL_BEHIND
    assert running_feed.subscribers == 1
    # What it missed is still in the stream: resuming from where it was gets all of it.
    resumed = await running_feed.subscribe(after="0-0")
    got = [await resumed.next(idle=WAIT) for _ in range(5)]
    assert [orjson.loads(e.ws)["id"] for e in got if e is not None] == [1, 2, 3, 4, 5]


async def test_writes_while_redis_is_away_end_in_a_reset(
    redis: Redis, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Their events are not published late (after later writes'); when the outbox delivers their
    invalidations, every feed is told to start over."""
    app = create_app(settings)
    async with serve(app) as client:
        kapi: Kapi = app.state.kapi
        client.headers.update(bearer(await login(client)))
        feed = await kapi.feed.subscribe(city="ankara")
        with monkeypatch.context() as patched:
            patched.setattr(kapi.listings.read, "_client", lambda: None)  # the write's step cannot reach Redis
            created = await client.post("/listings", json={"title": "t", "price": "1", "city": "İzmir"})
            assert created.status_code == 201
            assert await redis.xlen(STREAM) == 0
        event = await feed.next(idle=WAIT)  # once the outbox is drained (every 0.5 s)
        assert event is not None and event.type == "reset"
        assert orjson.loads(event.ws) == {"event_id": event.id, "type": "reset", "reason": LOST_WRITES}
        (entry,) = await redis.xrange(STREAM)
        assert entry[1] == {b"type": b"reset", b"reason": LOST_WRITES.encode()}


async def test_publishing_in_the_invalidation_step(redis: Redis, redis_server: RedisServer, tmp_path: Path) -> None:
    """One script: listing:{id} deleted, the generation bumped and the event added, with a TTL."""
    async with serve(create_app(make_settings(redis_server.url, tmp_path, feed_max_len=10))) as client:
        client.headers.update(bearer(await login(client)))
        listing = await create(client, city="Muğla")
        for i in range(60):
            assert (await client.patch(f"/listings/{listing['id']}", json={"title": f"v{i}"})).status_code == 200
        entries = await redis.xrange(STREAM)
        assert 10 <= len(entries) < 61  # MAXLEN ~ 10: trimmed, roughly
        last = entries[-1][1]
        assert last[b"type"] == b"updated" and last[b"cities"] == b"mugla"
        assert orjson.loads(last[b"listing"])["title"] == "v59"
        assert 0 < await redis.ttl(STREAM) <= 30 * 86400
        assert await redis.get("generation:listings") is not None


async def test_the_feed_on_a_redis_cluster(tmp_path: Path) -> None:
    """The stream lives in the search generation's slot (one script bumps the one and adds to the
    other, no CROSSSLOT), and the reader blocks on the node that holds it."""
    from gateway.testing import RedisCluster

    with RedisCluster(masters=3) as cluster:
        app = create_app(make_settings(cluster.url, tmp_path, redis_mode="cluster"))
        async with serve(app) as client:
            kapi: Kapi = app.state.kapi
            assert kapi.feed.stream == "{listings}:listings:events"
            client.headers.update(bearer(await login(client)))
            feed = await kapi.feed.subscribe(city="istanbul")
            listing = await create(client, city="İSTANBUL")
            assert (await client.delete(f"/listings/{listing['id']}")).status_code == 204
            got = [await feed.next(idle=WAIT) for _ in range(2)]
            assert [(e.type, orjson.loads(e.ws)["id"]) for e in got if e is not None] == [
                ("created", listing["id"]),
                ("deleted", listing["id"]),
            ]
            resumed = await kapi.feed.subscribe(after="0-0")
            assert (await resumed.next(idle=WAIT)).type == "created"  # type: ignore[union-attr]

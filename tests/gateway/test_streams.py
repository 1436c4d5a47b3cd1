"""Long-lived connections under the gate, against a real uvicorn and a real redis-server: WebSocket
handshakes checked like requests and refused before accept, and open WebSockets and SSE streams
closed within a second of their token no longer being valid."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from gateway import (
    AuthRules,
    GatewayMiddleware,
    NearCache,
    Policy,
    RateLimiter,
    RateLimits,
    SessionStore,
    TokenBlacklist,
    TokenIssuer,
    TokenVerifier,
)
from gateway.problem import ProblemResponse, answer
from gateway.streams import CLOSE_POLICY, CLOSE_RETRY, StreamGuard
from gateway.testing import RedisServer, free_port
from tests.gateway.conftest import redis_client

pytestmark = pytest.mark.anyio

SECRET = "a-test-secret-of-a-decent-length-0123456789"


async def hello(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"user": websocket.user.identity, "subprotocols": websocket.scope["subprotocols"]})
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.receive_text()


async def ticks(request: Request) -> StreamingResponse:
    async def events() -> AsyncIterator[bytes]:
        while True:
            yield b"data: tick\n\n"
            await asyncio.sleep(0.1)

    return StreamingResponse(events(), media_type="text/event-stream")


async def me(request: Request) -> JSONResponse:
    return JSONResponse({"user": request.user.identity})


class Server:
    """The gateway over a tiny app, served by uvicorn in a thread (its own event loop), on a Redis
    the test started."""

    def __init__(
        self, redis_url: str, *, per_user: int = 10, rate: str = "1000/minute", session_ttl: int = 60, leeway: int = 30
    ) -> None:
        self.redis_url = redis_url
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        routes = [Route("/me", me), Route("/ticks", ticks), WebSocketRoute("/ws", hello)]
        state: dict[str, Any] = {}
        self.state = state

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            state["redis"] = redis_client(redis_url, redis_timeout=1.0)
            await state["channel"].start(wait=5)
            yield
            await state["channel"].aclose()
            await state["redis"].aclose()

        def current() -> Redis | None:
            return state.get("redis")

        sessions = SessionStore(current, ttl=session_ttl)
        blacklist = TokenBlacklist(current, sessions=sessions, leeway=leeway)
        channel = NearCache(redis=current, prefixes=[], ping_interval=0.2)
        guard = StreamGuard(blacklist=blacklist, channel=channel, per_user=per_user)
        state.update(channel=channel, guard=guard, blacklist=blacklist, sessions=sessions)
        app = Starlette(routes=routes, lifespan=lifespan)
        app.add_middleware(
            GatewayMiddleware,
            verifier=TokenVerifier(key=SECRET, leeway=leeway),
            blacklist=blacklist,
            limiter=RateLimiter(current),
            auth=AuthRules(public=["/me"]),
            limits=RateLimits(default=Policy.of("default", rate)),
            routes=routes,
            streams=guard,
        )
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def guard(self) -> StreamGuard:
        guard: StreamGuard = self.state["guard"]
        return guard

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[Server]:
    with Server(redis_server.url) as running:
        yield running


def token(sub: str = "42", *, sid: str | None = None, ttl: int = 600, **claims: Any) -> tuple[str, dict[str, Any]]:
    issuer = TokenIssuer(key=SECRET, access_ttl=ttl)
    made = issuer.claims(sub, "access", session_id=sid or "unused")
    if sid is None:
        del made["sid"]
    made.update(claims)
    return issuer.encode(made), made


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def closed_within(ws: Any, seconds: float) -> tuple[int, str]:
    """Read until the server closes; the close code and reason (fails if it takes longer)."""
    started = time.monotonic()
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(seconds):
            while True:
                await ws.recv()
    assert time.monotonic() - started < seconds
    assert closed.value.rcvd is not None, "closed without a close frame from the server"
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_an_anonymous_handshake_is_refused_before_accept_with_the_http_answer(server: Server) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://{server.url}/ws"):
            pass
    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="kapi"'
    assert response.headers["Content-Type"] == "application/problem+json"
    assert orjson.loads(response.body)["status"] == 401
    with pytest.raises(InvalidStatus) as bad:
        async with connect(f"ws://{server.url}/ws", additional_headers=bearer(token()[0] + "=")):
            pass
    assert bad.value.response.status_code == 401
    assert 'error="invalid_token"' in bad.value.response.headers["WWW-Authenticate"]


async def test_a_token_in_the_header_or_in_a_subprotocol_opens_it(server: Server) -> None:
    value, _ = token("7")
    async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws:
        assert orjson.loads(await ws.recv()) == {"user": "7", "subprotocols": []}
    async with connect(f"ws://{server.url}/ws", subprotocols=["chat", f"bearer.{value}"]) as ws:  # type: ignore[list-item]
        # As a browser: the token offered as a subprotocol, never seen by the app; "chat" is chosen.
        assert ws.subprotocol == "chat"
        assert orjson.loads(await ws.recv()) == {"user": "7", "subprotocols": ["chat"]}


async def test_handshakes_count_against_the_routes_budget(redis_server: RedisServer) -> None:
    with Server(redis_server.url, rate="2/minute") as server:
        value, _ = token("8")
        for _ in range(2):
            async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws:
                assert ws.response.headers["RateLimit-Limit"] == "2"
                await ws.recv()
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)):
                pass
    assert refused.value.response.status_code == 429
    assert int(refused.value.response.headers["Retry-After"]) >= 1
    assert refused.value.response.headers["RateLimit-Remaining"] == "0"


async def test_a_logout_closes_an_open_websocket_and_an_open_sse_stream_within_a_second(server: Server) -> None:
    value, claims = token("9")
    async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws:
        await ws.recv()
        async with (
            httpx.AsyncClient(base_url=f"http://{server.url}") as http,
            http.stream("GET", "/ticks", headers=bearer(value)) as sse,
        ):
            lines = sse.aiter_lines()
            assert await anext(lines) == "data: tick"
            started = time.monotonic()
            await revoke(server, claims)
            code, reason = await closed_within(ws, 1.0)
            rest = [line async for line in lines]
            assert time.monotonic() - started < 1.0
    assert (code, reason) == (CLOSE_POLICY, "The token has been revoked.")
    assert "event: close" in rest
    closing = orjson.loads(rest[rest.index("event: close") + 1].removeprefix("data: "))
    assert closing == {"type": "close", "reason": "The token has been revoked.", "retry": False}


async def revoke(server: Server, claims: dict[str, Any]) -> None:
    """Log the token out as another instance would: through Redis, not through this server."""
    redis = redis_client(server.redis_url)
    try:
        await TokenBlacklist(redis, sessions=SessionStore(redis)).logout(claims)
    finally:
        await redis.aclose()


@contextlib.asynccontextmanager
async def both(server: Server, value: str) -> AsyncIterator[tuple[Any, AsyncIterator[str]]]:
    """A WebSocket and an SSE stream opened with the same token, both past their first message."""
    async with (
        connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws,
        httpx.AsyncClient(base_url=f"http://{server.url}", timeout=10) as http,
        http.stream("GET", "/ticks", headers=bearer(value)) as sse,
    ):
        await ws.recv()
        lines = sse.aiter_lines()
        assert await anext(lines) == "data: tick"
        yield ws, lines


async def sse_ended_within(lines: AsyncIterator[str], seconds: float) -> str:
    """Read the SSE stream to its end (fails if it takes longer); the reason of its last event."""
    async with asyncio.timeout(seconds):
        rest = [line async for line in lines]
    assert "event: close" in rest, rest[-5:]
    data = orjson.loads(rest[rest.index("event: close") + 1].removeprefix("data: "))
    assert data["type"] == "close" and data["retry"] is False
    reason: str = data["reason"]
    return reason


async def test_log_out_everywhere_and_an_ended_session_close_their_streams(server: Server) -> None:
    plain, _ = token("10")
    redis = redis_client(server.redis_url)
    try:
        async with both(server, plain) as (ws, sse):
            await TokenBlacklist(redis).revoke_all("10")
            everywhere = "The token was revoked by a log-out on all devices."
            assert await closed_within(ws, 1.0) == (CLOSE_POLICY, everywhere)
            assert await sse_ended_within(sse, 1.0) == everywhere
        sessions = SessionStore(redis)
        await sessions.open("11", "s1", refresh_jti="r1", ip="127.0.0.1", user_agent="t")
        with_session, _ = token("11", sid="s1")
        async with both(server, with_session) as (ws, sse):
            await sessions.end("11", "s1")
            ended = "The token's session has ended; log in again."
            assert await closed_within(ws, 1.0) == (CLOSE_POLICY, ended)
            assert await sse_ended_within(sse, 1.0) == ended
    finally:
        await redis.aclose()


async def test_expiry_and_an_idle_login_close_their_streams(redis_server: RedisServer) -> None:
    with Server(redis_server.url, session_ttl=1, leeway=1) as server:
        value, _ = token("12", ttl=2)
        async with both(server, value) as (ws, sse):
            # closed once no verifier would accept it: exp + leeway (1 s here)
            assert await closed_within(ws, 2 + 1 + 1) == (CLOSE_POLICY, "The token has expired.")
            assert await sse_ended_within(sse, 1.0) == "The token has expired."
        redis = redis_client(server.redis_url)
        try:
            await SessionStore(redis, ttl=1).open("13", "s2", refresh_jti="r2", ip="127.0.0.1", user_agent="t")
        finally:
            await redis.aclose()
        value, _ = token("13", sid="s2")
        async with both(server, value) as (ws, sse):
            # The login lapses SESSION_TTL (1 s) plus its touch interval after its last use.
            ended = "The token's session has ended; log in again."
            assert await closed_within(ws, 3.5) == (CLOSE_POLICY, ended)
            assert await sse_ended_within(sse, 1.0) == ended


async def test_a_user_holds_at_most_per_user_streams(redis_server: RedisServer) -> None:
    with Server(redis_server.url, per_user=2) as server:
        value, _ = token("14")
        async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as first:
            await first.recv()
            async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as second:
                await second.recv()
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)):
                        pass
                assert refused.value.response.status_code == 429
                other, _ = token("15")  # another user is not affected
                async with connect(f"ws://{server.url}/ws", additional_headers=bearer(other)) as ws:
                    await ws.recv()
        # closed ones free their slots, once the server has seen them close (within a second, even loaded)
        for attempt in range(20):
            try:
                async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as again:
                    await again.recv()
                break
            except InvalidStatus as exc:
                assert exc.response.status_code == 429 and attempt < 19
                await asyncio.sleep(0.05)


async def test_losing_the_revocation_channel_closes_streams_with_a_retry_code(server: Server) -> None:
    value, _ = token("16")
    async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws:
        await ws.recv()
        redis = Redis.from_url(server.redis_url)
        try:
            await redis.client_kill_filter(_type="normal", skipme=True, laddr=None)  # every connection but ours
        finally:
            await redis.aclose()
        code, reason = await closed_within(ws, 2.0)
    assert code == CLOSE_RETRY and "reconnect" in reason
    await asyncio.sleep(1.0)  # the channel comes back by itself; streams are served again
    async with connect(f"ws://{server.url}/ws", additional_headers=bearer(value)) as ws:
        await ws.recv()


@pytest.mark.parametrize(("status", "code"), [(401, CLOSE_POLICY), (429, CLOSE_POLICY), (503, 1011)])
async def test_without_the_denial_extension_a_refusal_is_a_close_before_accept(status: int, code: int) -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "subprotocols": []}
    await answer(ProblemResponse(status, "Why it was refused."), scope, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": code, "reason": "Why it was refused."}]

"""WebSockets and SSE under the gateway: the handshake is checked like a request, and a StreamGuard
closes an open connection within a second of its token being logged out, on any instance."""

import asyncio
import contextlib
import itertools
import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from gateway import GatewayMiddleware, NearCache, RateLimiter, RateLimits, StreamGuard, TokenBlacklist, TokenVerifier

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
blacklist = TokenBlacklist(redis)
channel = NearCache(redis=redis, prefixes=[])  # Redis's invalidation pushes, nothing cached
guard = StreamGuard(blacklist=blacklist, channel=channel, per_user=10)


async def chat(websocket):
    await websocket.accept()  # the handshake passed the gateway: a valid token
    await websocket.send_text(f"hello {websocket.user.identity}")
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await websocket.send_text(f"you said: {await websocket.receive_text()}")


async def ticks(request):
    async def events():
        for n in itertools.count():
            yield f"data: tick {n}\n\n"
            await asyncio.sleep(0.5)

    return StreamingResponse(events(), media_type="text/event-stream")


async def logout(request):
    await blacklist.revoke(request.user.claims)
    return Response(status_code=204)


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    await channel.start()  # the guard hears revocations on it
    yield
    await guard.aclose()
    await channel.aclose()
    await state.pop("redis").aclose()


routes = [WebSocketRoute("/chat", chat), Route("/ticks", ticks), Route("/logout", logout, methods=["POST"])]
app = Starlette(routes=routes, lifespan=lifespan)
app.add_middleware(
    GatewayMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"]),
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    routes=routes,
    limits=RateLimits(default="100/hour"),
    streams=guard,  # follow every WebSocket and SSE stream that carries a token
)

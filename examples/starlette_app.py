"""Kapı's gateway in a Starlette app: @requires works with request.user, a route declares its own limit,
logging tokens out, and a WebSocket under the same gate."""

import os
import sys
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier, limit

if not os.environ.get("JWT_SECRET"):
    sys.exit("Set JWT_SECRET first: the key your tokens are signed with (a long random string).")

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
blacklist = TokenBlacklist(redis)


@requires("authenticated")
async def me(request):
    return JSONResponse({"id": request.user.identity, "scopes": request.auth.scopes})


@requires("authenticated")
@limit("2/minute")  # found through the routes given to the middleware
async def upload(request):
    return JSONResponse({"uploaded_by": request.user.identity})


@requires("authenticated")
async def logout(request):
    await blacklist.revoke(request.user.claims)  # this token stops working
    return Response(status_code=204)


@requires("authenticated")
async def logout_everywhere(request):
    await blacklist.revoke_all(request.user.identity)  # every token of this user issued so far stops working
    return Response(status_code=204)


@requires("authenticated")
async def feed(websocket):  # @requires works for WebSockets too: the gateway set websocket.user
    await websocket.accept()
    await websocket.send_json({"hello": websocket.user.identity})
    await websocket.close()


async def public(request):
    return JSONResponse({"signed_in": request.user.is_authenticated})


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)
    yield
    await state.pop("redis").aclose()


routes = [
    Route("/me", me),
    Route("/upload", upload, methods=["POST"]),
    Route("/public", public),
    Route("/logout", logout, methods=["POST"]),
    Route("/logout/all", logout_everywhere, methods=["POST"]),
    WebSocketRoute("/feed", feed),
]
app = Starlette(
    routes=routes,
    lifespan=lifespan,
    middleware=[
        Middleware(
            GatewayMiddleware,
            verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
            blacklist=blacklist,
            limiter=RateLimiter(redis),
            routes=routes,
            auth=AuthRules(public=["GET /public"]),
            limits=RateLimits(default="100/hour"),
        )
    ],
)

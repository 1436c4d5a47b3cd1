"""Kapı's gateway in a FastAPI app: the caller as a dependency (the OpenAPI lock), a route's own
rate limit next to the route, the cache decorator, logging tokens out, and a WebSocket under the same gate."""

import os
import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI, WebSocket
from redis.asyncio import Redis

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier, cached, limit
from gateway.integrations.fastapi import CurrentUser

if not os.environ.get("JWT_SECRET"):
    sys.exit("Set JWT_SECRET first: the key your tokens are signed with (a long random string).")

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
blacklist = TokenBlacklist(redis)


@asynccontextmanager
async def lifespan(app: FastAPI):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)
    yield
    await state.pop("redis").aclose()


app = FastAPI(lifespan=lifespan)


@cached("greeting:{name}", redis=redis, ttl=60)
async def greeting(name: str) -> dict:
    return {"greeting": f"merhaba {name}"}  # imagine a slow database query here


@app.get("/me")
async def me(user: CurrentUser) -> dict:
    return await greeting(user.identity)


@app.post("/messages")
@limit("2/minute")  # this route's own limit, enforced by the gateway in its one round trip
async def send_message(user: CurrentUser) -> dict:
    return {"sent_by": user.identity}


@app.post("/logout", status_code=204)
async def logout(user: CurrentUser) -> None:
    await blacklist.revoke(user.claims)  # this token stops working


@app.post("/logout/all", status_code=204)
async def logout_everywhere(user: CurrentUser) -> None:
    await blacklist.revoke_all(user.identity)  # every token of this user issued so far stops working


@app.websocket("/ws")
async def chat(websocket: WebSocket) -> None:  # the handshake passed the gateway: a valid token
    await websocket.accept()
    await websocket.send_json({"hello": websocket.user.identity})
    await websocket.close()


@app.get("/public")
async def public() -> dict:
    return {"public": True}


app.add_middleware(
    GatewayMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    routes=app.routes,  # FastAPI's routes give the templates ("GET /me") and the @limit declarations
    auth=AuthRules(public=["GET /public", "/docs", "/openapi.json"]),
    limits=RateLimits(default="100/hour"),
)

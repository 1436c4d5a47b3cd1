"""Kapı's auth middleware and cache decorator in a FastAPI app."""

import os
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from redis.asyncio import Redis

from gateway import AuthMiddleware, TokenBlacklist, TokenVerifier, cached

state: dict[str, Redis] = {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)
    yield
    await state.pop("redis").aclose()


app = FastAPI(lifespan=lifespan)


@cached("greeting:{name}", redis=lambda: state.get("redis"), ttl=60)
async def greeting(name: str) -> dict:
    return {"greeting": f"merhaba {name}"}  # imagine a slow database query here


@app.get("/me")
async def me(request: Request) -> dict:
    return await greeting(request.user.identity)


@app.get("/public")
async def public() -> dict:
    return {"public": True}


app.add_middleware(
    AuthMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=TokenBlacklist(lambda: state.get("redis"), sessions=False),
    routes=app.routes,  # FastAPI's routes give the templates ("GET /me")
    public=["GET /public", "/docs", "/openapi.json"],
)

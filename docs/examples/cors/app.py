"""CORS for browser clients: Starlette's CORSMiddleware outside the gateway, so a preflight is
answered before authentication and rate limiting see it."""

import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)


async def me(request):
    return JSONResponse({"user": request.user.identity})


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    yield
    await state.pop("redis").aclose()


routes = [Route("/me", me)]
cors = Middleware(
    CORSMiddleware,
    allow_origins=["https://app.example.com"],
    allow_methods=["GET", "POST", "PATCH", "DELETE"],
    allow_headers=["Authorization", "Content-Type"],
    # What browser code may read: the rate-limit headers and why a token was refused.
    expose_headers=["RateLimit", "RateLimit-Policy", "Retry-After", "WWW-Authenticate"],
)
gateway = Middleware(
    GatewayMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"]),
    blacklist=TokenBlacklist(redis),
    limiter=RateLimiter(redis),
    routes=routes,
    limits=RateLimits(default="100/hour"),
)
app = Starlette(routes=routes, lifespan=lifespan, middleware=[cors, gateway])  # cors is outside

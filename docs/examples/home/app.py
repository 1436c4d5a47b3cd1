"""A Starlette app behind Kapı's gateway."""

import os

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import gateway as kapi


async def me(request):
    return JSONResponse({"user": request.user.identity})  # the token's sub


async def health(request):
    return JSONResponse({"ok": True})


redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
routes = [Route("/me", me), Route("/health", health)]
app = kapi.GatewayMiddleware(
    Starlette(routes=routes),
    verifier=kapi.TokenVerifier(key=os.environ["JWT_SECRET"]),  # HS256
    blacklist=kapi.TokenBlacklist(redis),  # revoked tokens, for every process
    limiter=kapi.RateLimiter(redis),  # exact across processes and hosts
    routes=routes,
    auth=kapi.AuthRules(public=["GET /health"]),  # the rest needs a token
    limits=kapi.RateLimits(default="100/hour"),  # per user and route
)

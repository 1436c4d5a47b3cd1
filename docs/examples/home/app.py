"""A Starlette app behind Kapı's gateway: every request's token checked (and revocable), 100 requests
an hour per user and route, in one Redis round trip."""

import os

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier


async def me(request):
    return JSONResponse({"user": request.user.identity})  # the token's sub


async def health(request):
    return JSONResponse({"ok": True})


redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
routes = [Route("/me", me), Route("/health", health)]
app = GatewayMiddleware(
    Starlette(routes=routes),
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=TokenBlacklist(redis),  # a revoked token is refused on every process at once
    limiter=RateLimiter(redis),  # exact across processes and hosts
    routes=routes,
    auth=AuthRules(public=["GET /health"]),  # everything else needs a valid token
    limits=RateLimits(default="100/hour"),
)

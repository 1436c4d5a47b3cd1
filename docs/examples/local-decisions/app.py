"""Local decisions: a warm request decided in this process, with no Redis round trip. The revocation
view remembers tokens Redis found valid (kept coherent by Redis's pushes on the tracking channel), and
reservations spend rate-limit budget taken from Redis ahead of need."""

import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import GatewayMiddleware, NearCache, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier
from gateway.ratelimit.reservations import Reservations
from gateway.revocation_view import RevocationView

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
blacklist = TokenBlacklist(redis)
channel = NearCache(redis=redis, prefixes=[])  # Redis's invalidation pushes, nothing cached
view = RevocationView(blacklist=blacklist, channel=channel)  # tokens found valid, dropped on a push
reservations = Reservations()  # budget taken ahead: up to 1 % of the limit per round trip, at most 512


async def items(request):
    return JSONResponse({"items": [], "user": request.user.identity})


async def logout(request):
    await blacklist.revoke(request.user.claims)
    return Response(status_code=204)


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    await channel.start()  # until it is up, every request takes the one round trip
    yield
    await channel.aclose()
    await state.pop("redis").aclose()


routes = [Route("/items", items), Route("/logout", logout, methods=["POST"])]
app = Starlette(routes=routes, lifespan=lifespan)
app.add_middleware(
    GatewayMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"]),
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    routes=routes,
    limits=RateLimits(default="20000/day"),
    view=view,  # built on the same blacklist
    reservations=reservations,
)

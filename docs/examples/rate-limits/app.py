"""Rate limits per route, per tier, by cost, by client address, and in shadow mode."""

import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import AuthRules, GatewayMiddleware, Policy, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier, limit

state: dict[str, Redis] = {}
TIERS = {
    "pro": Policy.of("pro", "1000/hour"),
    "gold": Policy.of("gold", "10/second;5000/hour"),  # two limits at once
}


def by_tier(scope, user_id, endpoint):
    """Limits from the token's tier claim (None: the default)."""
    claims = getattr(scope["user"], "claims", {})
    return TIERS.get(claims.get("tier"))


async def items(request):
    return JSONResponse({"items": []})


@limit("10/minute", cost=5)  # a search costs 5 units of this route's 10 a minute
async def search(request):
    return JSONResponse({"results": []})


@limit("3/minute", shadow=True)  # a new limit, watched before it is switched on
async def export(request):
    return JSONResponse({"export": "started"})


async def login(request):
    return JSONResponse({"signed_in": False})


async def health(request):
    return JSONResponse({"ok": True})


@asynccontextmanager
async def lifespan(app):
    url = os.environ.get("REDIS_URL", "redis://localhost:6379/0")
    state["redis"] = Redis.from_url(url)
    yield
    await state.pop("redis").aclose()


routes = [
    Route("/items", items),
    Route("/search", search),
    Route("/export", export, methods=["POST"]),
    Route("/login", login, methods=["POST"]),
    Route("/health", health),
]
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
limits = RateLimits(
    default="100/hour",
    overrides={"POST /login": Policy.of("login", "10/minute", by="ip")},  # per address
    exempt=["GET /health"],
    choose=by_tier,
)
app = Starlette(routes=routes, lifespan=lifespan)
app.add_middleware(
    GatewayMiddleware,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"]),
    blacklist=TokenBlacklist(redis),
    limiter=RateLimiter(redis),
    routes=routes,
    auth=AuthRules(public=["POST /login", "GET /health"]),
    limits=limits,
)

"""Tokens from an identity provider (Keycloak, Auth0, ...), verified with the keys it publishes
(its JWKS); logout and rate limits work for them as for your own."""

import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import GatewayMiddleware, JwksKeySet, Policy, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier

state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
blacklist = TokenBlacklist(redis)
verifier = TokenVerifier(
    key=os.environ["JWT_SECRET"],  # your own key: tokens you mint pass too
    jwks=JwksKeySet(os.environ["JWT_JWKS_URL"], algorithm="RS256"),  # the provider's keys
    issuer=os.environ["JWT_ISSUER"],  # with a JWKS, both are required:
    audience=os.environ["JWT_AUDIENCE"],  # only tokens meant for this API pass
)
TIERS = {"pro": Policy.of("pro", "1000/hour")}


def tier_from_roles(scope, user_id, endpoint):
    """Keycloak puts a user's roles in realm_access.roles: a role named like a tier picks it."""
    roles = getattr(scope["user"], "claims", {}).get("realm_access", {}).get("roles", [])
    return next((TIERS[role] for role in roles if role in TIERS), None)


async def me(request):
    return JSONResponse({"user": request.user.identity, "issuer": request.user.claims["iss"]})


async def logout(request):
    await blacklist.revoke(request.user.claims)  # refused here from now on (see the page)
    return Response(status_code=204)


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    yield
    await state.pop("redis").aclose()


routes = [Route("/me", me), Route("/logout", logout, methods=["POST"])]
app = Starlette(routes=routes, lifespan=lifespan)
app.add_middleware(
    GatewayMiddleware,
    verifier=verifier,
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    routes=routes,
    limits=RateLimits(default="100/hour", choose=tier_from_roles),
)

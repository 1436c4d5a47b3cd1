"""Peer (a): Starlette + slowapi (Redis storage) + the same JWT check (python-jose, Redis blacklist)
+ a Redis GET of the cached listing, written the way their documentation shows."""

import os

from jose import JWTError, jwt
from redis.asyncio import Redis
from slowapi import Limiter
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIMiddleware
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = os.environ["JWT_SECRET"]
REDIS_URL = os.environ["REDIS_URL"]
redis = Redis.from_url(REDIS_URL)


def user_key(request: Request) -> str:
    return getattr(request.state, "user", None) or (request.client.host if request.client else "anon")


limiter = Limiter(key_func=user_key, storage_uri=REDIS_URL, default_limits=["10000000/hour"])


async def get_listing(request: Request) -> Response:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        return JSONResponse({"detail": "unauthorized"}, status_code=401)
    try:
        claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"], options={"verify_aud": False})
    except JWTError:
        return JSONResponse({"detail": "unauthorized"}, status_code=401)
    if await redis.exists(f"blacklist:{claims['jti']}"):
        return JSONResponse({"detail": "revoked"}, status_code=401)
    request.state.user = claims["sub"]
    cached = await redis.get(f"listing:{request.path_params['listing_id']}")
    if cached is None:
        return JSONResponse({"detail": "not found"}, status_code=404)
    return Response(cached, media_type="application/json")


def rate_limited(request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": "too many requests"}, status_code=429)


app = Starlette(routes=[Route("/listings/{listing_id}", get_listing)])
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, rate_limited)
app.add_middleware(SlowAPIMiddleware)

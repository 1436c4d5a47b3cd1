"""Peer (b): FastAPI + fastapi-limiter (Redis) + fastapi-cache2 (``@cache``, Redis) + the same JWT
check (python-jose, Redis blacklist), written the way their documentation shows."""

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi_cache import FastAPICache
from fastapi_cache.backends.redis import RedisBackend
from fastapi_cache.decorator import cache
from fastapi_limiter.depends import RateLimiter
from jose import JWTError, jwt
from pyrate_limiter import Duration, Limiter, Rate, RedisBucket
from redis.asyncio import Redis

SECRET = os.environ["JWT_SECRET"]
redis = Redis.from_url(os.environ["REDIS_URL"])
LISTING = json.loads(Path(os.environ["BENCH_LISTING_FILE"]).read_text())  # "the database"


state: dict[str, RateLimiter] = {}


@asynccontextmanager
async def lifespan(app: FastAPI):
    FastAPICache.init(RedisBackend(redis), prefix="fastapi-cache")
    bucket = await RedisBucket.init([Rate(10_000_000, Duration.HOUR)], redis, "bench-fastapi-limiter")
    state["limiter"] = RateLimiter(limiter=Limiter(bucket))
    yield


app = FastAPI(lifespan=lifespan)


async def rate_limit(request: Request, response: Response) -> None:
    await state["limiter"](request, response)


async def current_user(request: Request) -> str:
    header = request.headers.get("authorization", "")
    if not header.startswith("Bearer "):
        raise HTTPException(401)
    try:
        claims = jwt.decode(header[7:], SECRET, algorithms=["HS256"], options={"verify_aud": False})
    except JWTError:
        raise HTTPException(401) from None
    if await redis.exists(f"blacklist:{claims['jti']}"):
        raise HTTPException(401)
    return str(claims["sub"])


@app.get("/listings/{listing_id}", dependencies=[Depends(current_user), Depends(rate_limit)])
@cache(expire=3600)
async def get_listing(listing_id: int) -> dict:
    return LISTING

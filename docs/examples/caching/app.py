"""Read-through caching: @cached keeps results in Redis, and a NearCache keeps hot ones in this
process's memory, coherent with Redis."""

import os
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway import NearCache, cached

PRODUCTS = {1: {"id": 1, "name": "Çay bardağı", "price": "45.00"}}  # your database
state: dict[str, Redis] = {}
redis = lambda: state.get("redis")  # noqa: E731  (the client of the running lifespan)
# --8<-- [start:cached]
near = NearCache(redis=redis, prefixes=["product:"], max_entries=10_000, max_age=60)


@cached("product:{product_id}", redis=redis, ttl=3600, near=near)
async def load_product(product_id: int) -> dict | None:
    return PRODUCTS.get(product_id)  # a slow query, say; None is cached for 60 s


# --8<-- [end:cached]


async def read(request):
    product_id = request.path_params["product_id"]
    body, source = await load_product.read_json(product_id)  # "local", "redis", "loader"
    if body == b"null":
        return JSONResponse({"detail": "No such product."}, status_code=404)
    return Response(body, media_type="application/json", headers={"X-Cache": source})


async def update(request):
    product_id = request.path_params["product_id"]
    PRODUCTS[product_id] = {**PRODUCTS[product_id], **await request.json()}  # write first,
    await load_product.invalidate(product_id)  # then drop the cached copies everywhere
    return JSONResponse(PRODUCTS[product_id])


@asynccontextmanager
async def lifespan(app):
    state["redis"] = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"))
    await near.start()  # opens its tracking connection to the same Redis
    yield
    await near.aclose()
    await state.pop("redis").aclose()


routes = [
    Route("/products/{product_id:int}", read),
    Route("/products/{product_id:int}", update, methods=["PATCH"]),
]
app = Starlette(routes=routes, lifespan=lifespan)

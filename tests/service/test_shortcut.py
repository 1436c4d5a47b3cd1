"""``RouteShortcut``: the named routes answer exactly as through Starlette's router, errors included."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from gateway.routing import EndpointResolver
from service.shortcut import RouteShortcut

pytestmark = pytest.mark.anyio


async def item(request: Request) -> Response:
    if request.path_params["item_id"] == "boom":
        raise RuntimeError("a bug")
    return JSONResponse({"id": request.path_params["item_id"], "router": "router" in request.scope})


async def other(request: Request) -> Response:
    return PlainTextResponse("other")


async def server_error(request: Request, exc: Exception) -> Response:
    return JSONResponse({"title": "bug"}, status_code=500, media_type="application/problem+json")


def make_app(shortcut: bool) -> Starlette:
    routes = [Route("/items", other, methods=["GET"]), Route("/items/{item_id}", item, methods=["GET", "HEAD"])]
    resolver = EndpointResolver(routes)
    middleware = [Middleware(RouteShortcut, resolver=resolver, endpoints=["GET /items/{item_id}"])] if shortcut else []
    return Starlette(routes=routes, middleware=middleware, exception_handlers={Exception: server_error})


async def test_same_answers_with_and_without_it() -> None:
    answers = []
    for shortcut in (True, False):
        transport = httpx.ASGITransport(app=make_app(shortcut), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            got = await client.get("/items/7")
            head = await client.head("/items/7")
            answers.append(
                (
                    got.status_code, got.json()["id"], head.status_code, head.content,
                    head.headers["content-length"], (await client.get("/items")).text,
                    (await client.post("/items/7")).status_code, (await client.get("/items/7/x")).status_code,
                    (await client.get("/items/boom")).status_code,
                )
            )  # fmt: skip
    assert answers[0] == answers[1] == (200, "7", 200, b"", answers[1][4], "other", 405, 404, 500)


async def test_a_bug_in_a_shortcut_route_reaches_the_error_handler() -> None:
    transport = httpx.ASGITransport(app=make_app(True), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/items/boom")
    assert response.status_code == 500 and response.headers["content-type"] == "application/problem+json"


def test_an_endpoint_no_route_serves_is_refused_at_start_up() -> None:
    routes = [Route("/items/{item_id}", item, methods=["GET"])]
    with pytest.raises(ValueError, match="no route serves"):
        RouteShortcut(other, resolver=EndpointResolver(routes), endpoints=["GET /item/{item_id}"])

"""The floor: a bare Starlette route returning the listing JSON from memory, no checks at all."""

import os
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

BODY = Path(os.environ["BENCH_LISTING_FILE"]).read_bytes()


async def get_listing(request: Request) -> Response:
    return Response(BODY, media_type="application/json")


app = Starlette(routes=[Route("/listings/{listing_id}", get_listing)])

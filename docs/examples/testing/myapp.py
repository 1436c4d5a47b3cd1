"""The app under test. It takes its Redis client as an argument, so a test can give it its own."""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway import GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier


async def me(request):
    return JSONResponse({"user": request.user.identity})


def create_app(redis, *, secret: str) -> Starlette:
    routes = [Route("/me", me)]
    gateway = Middleware(
        GatewayMiddleware,
        verifier=TokenVerifier(key=secret),
        blacklist=TokenBlacklist(redis),
        limiter=RateLimiter(redis),
        routes=routes,
        limits=RateLimits(default="3/minute"),
    )
    return Starlette(routes=routes, middleware=[gateway])

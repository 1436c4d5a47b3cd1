"""Kapı's gateway in front of a bare ASGI callable (no framework): auth and rate limits in one round trip."""

import os

from redis.asyncio import Redis

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier

redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)


async def hello(scope, receive, send):
    user = scope["user"]  # set by the middleware, as Starlette's AuthenticationMiddleware would
    body = f"hello {user.identity if user.is_authenticated else 'stranger'}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


app = GatewayMiddleware(
    hello,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=TokenBlacklist(redis),  # tokens from another issuer: revocable by jti and log-out-all
    limiter=RateLimiter(redis),
    patterns=["GET /public", "GET /private"],  # route templates, for apps without Starlette routes
    auth=AuthRules(public=["GET /public"]),
    limits=RateLimits(default="100/hour"),
)

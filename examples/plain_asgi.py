"""Kapı's gateway in front of a bare ASGI callable (no framework): auth and rate limits in one round trip,
and logging tokens out."""

import os
import sys

from redis.asyncio import Redis

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier

if not os.environ.get("JWT_SECRET"):
    sys.exit("Set JWT_SECRET first: the key your tokens are signed with (a long random string).")

redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)
blacklist = TokenBlacklist(redis)  # tokens from another issuer: revocable by jti and log-out-all


async def respond(send, status: int, body: bytes = b"") -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def routes(scope, receive, send):
    if scope["type"] != "http":
        return  # no lifespan work to do
    user = scope["user"]  # set by the middleware, as Starlette's AuthenticationMiddleware would
    route = f"{scope['method']} {scope['path']}"
    if route == "POST /logout":  # protected: only a valid token gets here
        await blacklist.revoke(user.claims)  # this token stops working
        await respond(send, 204)
    elif route == "POST /logout/all":
        await blacklist.revoke_all(user.identity)  # every token of this user issued so far stops working
        await respond(send, 204)
    else:
        await respond(send, 200, f"hello {user.identity if user.is_authenticated else 'stranger'}".encode())


app = GatewayMiddleware(
    routes,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    patterns=["GET /public", "GET /private", "POST /logout", "POST /logout/all"],  # for apps without Starlette routes
    auth=AuthRules(public=["GET /public"]),
    limits=RateLimits(default="100/hour"),
)

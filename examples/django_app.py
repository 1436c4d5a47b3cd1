"""Kapı's gateway in front of a Django (ASGI) app: route templates from its URLconf, the caller in request.scope,
logging tokens out, and a WebSocket beside Django (whose ASGI handler serves HTTP only) under the same gate."""

import os
import sys

import django
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import path

if not os.environ.get("JWT_SECRET"):
    sys.exit("Set JWT_SECRET first: the key your tokens are signed with (a long random string).")

settings.configure(
    DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY=os.environ["JWT_SECRET"], USE_TZ=True
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402  (after settings)
from django.views.decorators.http import require_POST  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier  # noqa: E402
from gateway.integrations.django import patterns_from_urlconf, token_user  # noqa: E402

redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"), socket_timeout=0.1)
blacklist = TokenBlacklist(redis)


async def item(request, item_id: int):
    user = token_user(request)  # the caller the gateway authenticated (None: anonymous)
    return JsonResponse({"item": item_id, "viewer": user.identity if user else None})


async def orders(request):
    return JsonResponse({"orders_of": token_user(request).identity})


@require_POST
async def logout(request):
    await blacklist.revoke(token_user(request).claims)  # this token stops working
    return HttpResponse(status=204)


@require_POST
async def logout_everywhere(request):
    await blacklist.revoke_all(token_user(request).identity)  # every token of this user issued so far
    return HttpResponse(status=204)


urlpatterns = [
    path("items/<int:item_id>/", item),
    path("orders/", orders),
    path("logout/", logout),
    path("logout/all/", logout_everywhere),
]
django_app = get_asgi_application()


async def django_or_websocket(scope, receive, send):
    if scope["type"] != "websocket":
        await django_app(scope, receive, send)
        return
    await receive()  # websocket.connect
    if scope["path"] != "/ws/":  # a path no pattern names is public to the gateway: serve none of them
        await send({"type": "websocket.close", "code": 1008})
        return
    # The handshake of /ws/ passed the gateway: a valid token.
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": f"hello {scope['user'].identity}"})
    await send({"type": "websocket.close", "code": 1000})


app = GatewayMiddleware(
    django_or_websocket,
    verifier=TokenVerifier(key=os.environ["JWT_SECRET"], algorithm="HS256"),
    blacklist=blacklist,
    limiter=RateLimiter(redis),
    patterns=[*patterns_from_urlconf(), "GET /ws/"],  # ["/items/{item_id:int}/", "/orders/", ..., "GET /ws/"]
    auth=AuthRules(public=["/items/{item_id:int}/"]),
    limits=RateLimits(default="100/hour", overrides={"/orders/": "3/minute"}),
)

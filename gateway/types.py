"""Type aliases shared by every gateway module: ASGI, and the Redis clients we accept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from redis.asyncio import Redis, RedisCluster

#: An ASGI connection scope (``type`` is ``http``, ``websocket`` or ``lifespan``).
Scope = MutableMapping[str, Any]
#: An ASGI event, received or sent.
Message = MutableMapping[str, Any]
#: The ASGI ``receive`` callable.
Receive = Callable[[], Awaitable[Message]]
#: The ASGI ``send`` callable.
Send = Callable[[Message], Awaitable[None]]
#: An ASGI application (and so any middleware here): ``await app(scope, receive, send)``.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A standalone/sentinel client or a cluster client; components accept either.
RedisClient = Redis | RedisCluster
#: A client, or a callable returning the current one (None while there is none), so a component can
#: be built before the app's lifespan has created the client.
RedisSource = Redis | RedisCluster | Callable[[], "Redis | RedisCluster | None"]

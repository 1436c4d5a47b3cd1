"""Type aliases shared by every gateway module: ASGI, and the Redis clients we accept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from redis.asyncio import Redis, RedisCluster

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: A standalone/sentinel client or a cluster client; components accept either.
RedisClient = Redis | RedisCluster
#: A client, or a callable returning the current one (None while there is none), so a component can
#: be built before the app's lifespan has created the client.
RedisSource = Redis | RedisCluster | Callable[[], "Redis | RedisCluster | None"]

"""A pytest plugin (registered with the package): a real ``redis-server`` for your own test suite.

``kapi_redis_server`` starts one ``redis-server`` on a free port for the whole run and stops it at
the end; ``kapi_redis`` gives each test a ``redis.asyncio`` client on it, with the database emptied
first (the server is the test run's own, so that is safe). ``kapi_own_redis_server`` is a server for
one test that may pause, kill or restart it::

    async def test_my_app_behind_the_gateway(kapi_redis):
        app = build_my_app(redis=kapi_redis)
        ...

Without the installed package, add ``pytest_plugins = ["gateway.testing.plugin"]`` to a conftest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer


@pytest.fixture(scope="session")
def kapi_redis_server() -> Iterator[RedisServer]:
    """One real redis-server for the whole test run, on a free port of 127.0.0.1."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def kapi_own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test, which may ``pause()``, ``kill()`` or ``restart(empty=True)`` it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def kapi_redis(kapi_redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A client on the run's redis-server, its database emptied before the test."""
    client = Redis.from_url(kapi_redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()

"""Kapı's pytest fixtures: a real ``redis-server`` for your own test suite. Nothing registers them
unless the suite opts in, in one of these ways:

- ``kapi_fixtures = true`` in the pytest configuration (``[tool.pytest.ini_options]`` in
  ``pyproject.toml``, or ``pytest.ini``), read by the plugin the installed package registers;
- ``pytest_plugins = ["gateway.testing.fixtures"]`` in the ``conftest.py`` at the root of the suite;
- ``pytest -p gateway.testing.fixtures`` (also as ``addopts`` in the configuration).

``kapi_redis_server`` starts one ``redis-server`` on a free port for the whole run and stops it at
the end; ``kapi_own_redis_server`` is a server for one test that may pause, kill or restart it. Both
are plain (synchronous) fixtures, usable from any test. ``kapi_redis`` is an async fixture, registered
only when an async test plugin is loaded (anyio's, which comes with Starlette, or pytest-asyncio's):
a ``redis.asyncio`` client on the run's server, the database emptied first (the server is the run's
own, so that is safe), for ``pytest.mark.anyio`` tests (or pytest-asyncio's auto mode)::

    pytestmark = pytest.mark.anyio

    async def test_my_app_behind_the_gateway(kapi_redis):
        app = build_my_app(redis=kapi_redis)
        ...

With pytest-asyncio in strict mode, build the client in your own ``@pytest_asyncio.fixture`` from
``kapi_redis_server.url``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from gateway.testing import RedisServer

#: The pytest plugins that run async fixtures, by their registered names (anyio, pytest-asyncio).
ASYNC_PLUGINS = ("anyio", "asyncio")


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


class AsyncFixtures:
    """The fixtures that need an async test plugin; registered by ``pytest_configure`` when one is loaded."""

    @pytest.fixture
    async def kapi_redis(self, kapi_redis_server: RedisServer) -> AsyncIterator[Redis]:
        """A client on the run's redis-server, its database emptied before the test."""
        client = Redis.from_url(kapi_redis_server.url)
        await client.flushdb()
        yield client
        await client.aclose()


def pytest_configure(config: pytest.Config) -> None:
    if any(config.pluginmanager.hasplugin(name) for name in ASYNC_PLUGINS):
        config.pluginmanager.register(AsyncFixtures(), "kapi-async-fixtures")

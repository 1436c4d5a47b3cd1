"""Fixtures: a real redis-server started by the tests on a free port, and the service wired to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from gateway.redis_server import RedisServer
from service.app import create_app
from service.settings import Settings

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for the whole run; each test gets it flushed (it is ours, nobody else's)."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server for one test that may kill, pause or restart it."""
    with RedisServer() as server:
        yield server


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


def make_settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        "jwt_secret": TEST_SECRET,
    }
    values.update(overrides)
    environ = {key.upper(): str(value) for key, value in values.items()}
    return Settings.from_environ(environ, env_file=None)


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an HTTP client talking to it in-process."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://kapi.test") as client:
            yield client


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path) -> Settings:
    return make_settings(redis_server.url, tmp_path)


@pytest.fixture
async def app(settings: Settings, redis: Redis) -> Starlette:
    return create_app(settings)


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(app) as http:
        yield http

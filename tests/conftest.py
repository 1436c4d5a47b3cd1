"""Fixtures: a real redis-server started by the tests on a free port, and the service wired to it.
The service is imported only by the fixtures and helpers that wire it, so the gateway's own tests
(tests/gateway) run without it."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import uuid
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from redis.asyncio import Redis
from starlette.applications import Starlette

from gateway.testing import RedisServer

if TYPE_CHECKING:
    from service.settings import Settings

T = TypeVar("T")
# pytester: tests/test_package.py runs a user's suite against Kapı's plugin. The Redis fixtures are
# Kapı's own, opted into as a user's suite does.
pytest_plugins = ["pytester", "gateway.testing.fixtures"]

TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
PHONE_A, CODE_A = "+905550000001", "111111"
PHONE_B, CODE_B = "+905550000002", "222222"
PHONE_C, CODE_C = "+905550000003", "333333"
TEST_NUMBERS = f"{PHONE_A}:{CODE_A},{PHONE_B}:{CODE_B},{PHONE_C}:{CODE_C}"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# The servers come from Kapı's own pytest fixtures (gateway.testing.fixtures), as users' suites get them.
@pytest.fixture(scope="session")
def redis_server(kapi_redis_server: RedisServer) -> RedisServer:
    """One server for the whole run; each test gets it flushed (it is ours, nobody else's)."""
    return kapi_redis_server


@pytest.fixture
def own_redis_server(kapi_own_redis_server: RedisServer) -> RedisServer:
    """A server for one test that may kill, pause or restart it."""
    return kapi_own_redis_server


@pytest.fixture
def redis(kapi_redis: Redis) -> Redis:
    return kapi_redis


def make_settings(redis_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    from service.settings import Settings

    values: dict[str, Any] = {
        "redis_url": redis_url,
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
        "jwt_secret": TEST_SECRET,
        "otp_test_numbers": TEST_NUMBERS,
        "rate_limit": "1000/hour",  # the rate-limit tests set their own
    }
    values.update(overrides)
    environ = {key.upper(): str(value) for key, value in values.items()}
    return Settings.from_environ(environ, env_file=None)


def redis_client(url: str, **overrides: Any) -> Any:
    """A client configured exactly as the service configures its own, from settings (``REDIS_MODE``,
    ``REDIS_TIMEOUT``, ...), for the service's tests; the gateway's build theirs with redis-py alone
    (tests/gateway/conftest.py)."""
    from service.redis_client import create_redis
    from service.settings import Settings

    environ = {"REDIS_URL": url, "JWT_SECRET": TEST_SECRET, **{k.upper(): str(v) for k, v in overrides.items()}}
    return create_redis(Settings.from_environ(environ, env_file=None))


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an HTTP client talking to it in-process."""
    async with app.router.lifespan_context(app), http_client(app) as client:
        yield client


#: A PostgreSQL the suite may create throw-away databases on (this machine's, by default).
POSTGRES_URL = os.environ.get("KAPI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards; skips when none is reachable."""
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL} ({type(exc).__name__}); set KAPI_TEST_POSTGRES_URL")
    name = f"kapi_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """SQLite by default; test modules that run on both databases override this fixture."""
    yield f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}"


@pytest.fixture
def settings(redis_server: RedisServer, tmp_path: Path, database_url: str) -> Settings:
    return make_settings(redis_server.url, tmp_path, database_url=database_url)


@pytest.fixture
async def app(settings: Settings, redis: Redis) -> Starlette:
    from service.app import create_app

    return create_app(settings)


async def login(client: httpx.AsyncClient, phone: str = PHONE_A, code: str = CODE_A, **headers: str) -> dict[str, Any]:
    """Sign in through the real OTP flow (a test number with a fixed code) and return the tokens."""
    sent = await client.post("/auth/otp", json={"phone": phone}, headers=headers)
    assert sent.status_code == 202, sent.text
    response = await client.post("/auth/login/phone", json={"phone": phone, "code": code}, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


@pytest.fixture
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """The app with its lifespan running (Redis client and database open)."""
    async with app.router.lifespan_context(app):
        yield app


def own_task(request: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Run an in-process request in a context of its own, as a real server does (the breaker skips
    Redis for 1 s within the context of a request that saw it fail)."""
    return asyncio.create_task(request, context=contextvars.Context())


def http_client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://kapi.test")


@pytest.fixture
async def anon(running: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a token."""
    async with http_client(running) as http:
        yield http


@pytest.fixture
async def client(running: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client signed in as PHONE_A (its requests carry that user's access token)."""
    async with http_client(running) as http:
        http.headers.update(bearer(await login(http)))
        yield http

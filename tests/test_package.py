"""What `pip install kapi` gives a user: the gateway alone, with only its own dependencies, and a small
app wrapped with it that serves a request against a real Redis, in a fresh virtualenv. And the pytest
plugin a user's own suite gets: nothing unless it opts in, then a real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import tomllib
import venv
from pathlib import Path

import pytest

from gateway.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]

#: What the listing service needs and the gateway must not pull in.
SERVICE_ONLY = {
    "uvicorn", "databases", "aiosqlite", "asyncpg", "pydantic", "phonenumbers", "prometheus-client",
    "swagger-ui-bundle-v2", "fastapi", "django", "pytest", "httptools", "uvloop", "gunicorn",
}  # fmt: skip

APP = textwrap.dedent(
    """
    import asyncio, json, sys, time
    from jose import jwt
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from gateway import AuthRules, GatewayMiddleware, RateLimiter, RateLimits, TokenBlacklist, TokenVerifier

    async def me(request):
        return JSONResponse({"user": request.user.identity})

    async def main(url):
        redis = Redis.from_url(url)
        await redis.set("epoch", 0)
        routes = [Route("/me", me)]
        app = GatewayMiddleware(
            Starlette(routes=routes), verifier=TokenVerifier(key="k" * 40), blacklist=TokenBlacklist(redis),
            limiter=RateLimiter(redis), routes=routes, limits=RateLimits(default="5/minute"),
        )
        now = int(time.time())
        token = jwt.encode({"sub": "7", "jti": "j", "iat": now, "exp": now + 60, "type": "access"}, "k" * 40)
        sent = []
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": "/me", "raw_path": b"/me", "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"t"), (b"authorization", f"Bearer {token}".encode())],
                 "client": ("127.0.0.1", 1), "server": ("t", 80)}
        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}
        async def send(message):
            sent.append(message)
        await app(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        print(json.dumps({"status": sent[0]["status"], "body": json.loads(sent[1]["body"]),
                          "remaining": headers.get("ratelimit-remaining"),
                          "keys": sorted(k.decode() for k in await redis.keys("rate_limit:*"))}))
        await redis.aclose()

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_the_wheel_installs_the_gateway_alone_and_serves(tmp_path: Path, own_redis_server: RedisServer) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(dist)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    [wheel] = dist.glob("kapi-*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = str(env_dir / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                             timeout=600)  # fmt: skip
    assert install.returncode == 0, install.stderr
    assert "warning" not in install.stderr.lower().replace("warning: location", ""), install.stderr

    listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True, check=True)
    installed = {entry["name"].lower() for entry in json.loads(listed.stdout)}
    assert not installed & SERVICE_ONLY, installed & SERVICE_ONLY
    assert {"kapi", "starlette", "redis", "hiredis", "python-jose", "cryptography", "orjson"} <= installed
    probe = subprocess.run(
        [python, "-c", "import importlib.metadata as m, importlib.util as u, gateway; "
         "print(sorted(r.split(';')[0] for r in m.requires('kapi') if 'extra ==' not in r)); "
         "print(u.find_spec('service') is None, gateway.__version__ == m.version('kapi'))"],
        capture_output=True, text=True, cwd=tmp_path, check=True,
    )  # fmt: skip
    requires, checks = probe.stdout.splitlines()
    assert requires == "['orjson>=3.9', 'python-jose[cryptography]>=3.4', 'redis[hiredis]<9,>=8.0', 'starlette>=0.40']"
    assert checks == "True True"  # no top-level `service` package; the version is the package's

    (tmp_path / "app.py").write_text(APP)
    served = subprocess.run([python, "app.py", own_redis_server.url], capture_output=True, text=True, cwd=tmp_path,
                            timeout=60)  # fmt: skip
    assert served.returncode == 0, served.stderr
    result = json.loads(served.stdout)
    assert result == {"status": 200, "body": {"user": "7"}, "remaining": "4", "keys": ["rate_limit:7:GET /me"]}


#: A user's suite with fixtures of its own whose names a Redis test tooling might also want.
OWN_FIXTURES = textwrap.dedent(
    """
    import pytest

    @pytest.fixture
    def redis_server():
        return "the suite's own server"

    @pytest.fixture
    def redis():
        return "the suite's own client"

    def test_the_suites_own_fixtures_are_untouched(redis_server, redis, request):
        assert (redis_server, redis) == ("the suite's own server", "the suite's own client")
        assert request.config.pluginmanager.hasplugin("kapi")  # Kapı's plugin is installed and loaded
    """
)

#: A user's suite that opted into Kapı's fixtures.
USES_KAPI = textwrap.dedent(
    """
    import pytest

    @pytest.fixture
    def anyio_backend():
        return "asyncio"

    @pytest.mark.anyio
    async def test_uses_a_real_redis(kapi_redis, kapi_redis_server):
        await kapi_redis.set("k", "v")
        assert await kapi_redis.get("k") == b"v"
        assert kapi_redis_server.url.startswith("redis://127.0.0.1:")
        assert (await kapi_redis.info("server"))["tcp_port"] == kapi_redis_server.port

    @pytest.mark.anyio
    async def test_each_test_starts_empty(kapi_redis):
        assert await kapi_redis.dbsize() == 0

    def test_a_plain_test_gets_the_server(kapi_redis_server):
        assert kapi_redis_server.process is not None and kapi_redis_server.port > 0
    """
)


@pytest.fixture
def users_suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A fresh pytest run in a directory of its own, with the installed package's entry point (which
    names the module pyproject.toml names) and this checkout's code."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"]["pytest11"] == {"kapi": "gateway.testing.plugin"}
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    return pytester


def test_the_pytest_plugin_registers_nothing_a_suite_did_not_ask_for(users_suite: pytest.Pytester) -> None:
    """A suite with its own ``redis_server`` and ``redis`` fixtures and no async test plugin (anyio's
    is turned off) runs as if Kapı were not installed: no fixture of Kapı's, none that needs anyio."""
    users_suite.makepyfile(test_users_app=OWN_FIXTURES)
    result = users_suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio")
    result.assert_outcomes(passed=1)
    listed = users_suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio", "--fixtures")
    assert "redis_server" in listed.stdout.str() and "kapi_" not in listed.stdout.str()


@pytest.mark.parametrize("way", ["ini option", "conftest", "-p"])
def test_opting_in_gives_a_users_suite_a_real_redis(users_suite: pytest.Pytester, way: str) -> None:
    users_suite.makepyfile(test_users_app=USES_KAPI)
    args = ["-p", "no:cacheprovider"]
    if way == "ini option":
        users_suite.makepyprojecttoml("[tool.pytest.ini_options]\nkapi_fixtures = true\n")
    elif way == "conftest":
        users_suite.makeconftest('pytest_plugins = ["gateway.testing.fixtures"]')
    else:
        args += ["-p", "gateway.testing.fixtures"]
    result = users_suite.runpytest_subprocess(*args)
    result.assert_outcomes(passed=3)


def test_opting_in_without_an_async_plugin_gives_the_synchronous_fixtures_only(users_suite: pytest.Pytester) -> None:
    users_suite.makepyprojecttoml("[tool.pytest.ini_options]\nkapi_fixtures = true\n")
    users_suite.makepyfile(
        test_users_app=textwrap.dedent(
            """
            def test_a_plain_test_gets_the_server(kapi_redis_server, kapi_own_redis_server):
                assert kapi_redis_server.port != kapi_own_redis_server.port
            """
        )
    )
    result = users_suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio")
    result.assert_outcomes(passed=1)
    listed = users_suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:anyio", "--fixtures")
    assert "kapi_redis_server" in listed.stdout.str() and "kapi_redis " not in listed.stdout.str()

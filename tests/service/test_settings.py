"""Settings from the environment: DESIGN.md's defaults, and one clear line for a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.limits import Limit
from service.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_match_the_design() -> None:
    settings = Settings.from_environ({"JWT_SECRET": "x" * 40}, env_file=None)
    assert (settings.redis_host, settings.redis_port, settings.redis_db) == ("localhost", 6379, 0)
    assert str(settings.redis_password) == "" and settings.redis_url is None
    assert settings.redis_mode == "standalone"
    assert settings.database_url == "sqlite+aiosqlite:///./kapi.db"
    assert settings.jwt_algorithm == "HS256"
    assert (settings.access_token_ttl, settings.cache_ttl, settings.session_ttl) == (86400, 3600, 86400)
    assert settings.rate_limit == (Limit(100, 3600),)
    assert settings.auth_fail_open is False and settings.rate_limit_on_redis_error == "local"
    assert settings.env == "development" and settings.diagnostics is True


def test_seed_variables_and_dotenv_are_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_HOST=cache.internal\nREDIS_PORT=6380\nREDIS_DB=2\nREDIS_PASSWORD=s3cret\n")
    settings = Settings.from_environ({"RATE_LIMIT": "10/second;100/hour"}, env_file=env_file)
    assert (settings.redis_host, settings.redis_port, settings.redis_db) == ("cache.internal", 6380, 2)
    assert str(settings.redis_password) == "s3cret" and "s3cret" not in repr(settings)
    assert settings.rate_limit == (Limit(10, 1), Limit(100, 3600))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT", "abc"),
        ("REDIS_PORT", "x"),
        ("REDIS_PORT", "70000"),
        ("REDIS_DB", "-1"),
        ("REDIS_URL", "http://example"),
        ("REDIS_MODE", "galaxy"),
        ("JWT_ALGORITHM", "none"),
        ("CACHE_TTL", "0"),
        ("AUTH_FAIL_OPEN", "maybe"),
        ("RATE_LIMIT_ON_REDIS_ERROR", "sometimes"),
        ("OTP_TEST_NUMBERS", "+905550000001"),
        ("ENV", "staging"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{name}"):
        Settings.from_environ({name: value, "JWT_SECRET": "x" * 40}, env_file=None)


def test_production_requires_a_secret() -> None:
    with pytest.raises(SettingsError, match="JWT_SECRET"):
        Settings.from_environ({"ENV": "production"}, env_file=None)
    settings = Settings.from_environ({"ENV": "production", "JWT_SECRET": "k" * 40}, env_file=None)
    assert settings.diagnostics is False


def test_start_up_with_a_bad_value_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "RATE_LIMIT": "abc", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["kapi: configuration error: RATE_LIMIT='abc' is invalid: "
                     "'abc' is not a rate limit like '100/hour' or '5/2second'"]  # fmt: skip
    assert "Traceback" not in result.stderr + result.stdout

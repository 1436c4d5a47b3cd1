"""Settings from the environment: DESIGN.md's defaults, and one clear line for a bad value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.ratelimit import Limit, parse_limits
from service.settings import SHIPPED_SECRETS, Settings, SettingsError

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


def start_up(tmp_path: Path, **settings: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``uvicorn service.main:app`` with these settings, as the Procfile starts it; its non-empty stderr lines."""
    env = {**os.environ, **settings, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "service.main:app", "--port", "1"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result, [line for line in result.stderr.splitlines() if line.strip()]


def test_start_up_with_a_bad_value_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    result, lines = start_up(tmp_path, RATE_LIMIT="abc")
    assert result.returncode == 2
    assert lines == ["kapi: configuration error: RATE_LIMIT='abc' is invalid: "
                     "'abc' is not a rate limit like '100/hour' or '5/2second'"]  # fmt: skip
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("REDIS_URL", "ftp://user:hunter2-password@redis.internal:6379/0", "hunter2-password"),
        ("DATABASE_URL", "postgresql-no-scheme:hunter2-password@db", "hunter2-password"),
        ("JWT_SECRET", "short-hunter2", "hunter2"),
        ("REDIS_PASSWORD", "hunter2\x00", "hunter2"),
    ],
)
def test_configuration_errors_never_print_a_secret(name: str, value: str, secret: str) -> None:
    environ = {"JWT_SECRET": "x" * 40, name: value}
    if name == "JWT_SECRET":
        environ["ENV"] = "production"
    if name == "REDIS_PASSWORD":
        environ["REDIS_PORT"] = "x"  # a bad value elsewhere: the message must not carry the password either
    with pytest.raises(SettingsError) as caught:
        Settings.from_environ(environ, env_file=None)
    assert secret not in str(caught.value)
    if name == "REDIS_URL":
        assert str(caught.value).startswith("REDIS_URL='ftp://user:***@redis.internal:6379/0' is invalid")


def test_production_refuses_the_secrets_this_repository_ships() -> None:
    compose = (ROOT / "docker-compose.yml").read_text() + (ROOT / "docker-compose.production.yml").read_text()
    for secret in (*SHIPPED_SECRETS, "change-me-to-something-long-enough-for-hs256"):
        with pytest.raises(SettingsError, match="placeholder"):
            Settings.from_environ({"ENV": "production", "JWT_SECRET": secret}, env_file=None)
        Settings.from_environ({"JWT_SECRET": secret}, env_file=None)  # development: fine
    assert "change-me" not in compose


def test_new_settings_have_the_designs_defaults() -> None:
    settings = Settings.from_environ({"JWT_SECRET": "x" * 40}, env_file=None)
    assert settings.refresh_reuse_grace == 30
    assert settings.otp_max_failures == 10 and settings.otp_send_budget == parse_limits("1000/hour")
    assert settings.cors_origins == ()
    assert settings.jwt_max_lifetime == 30 * 86400  # the longest token this service mints
    with pytest.raises(SettingsError, match="JWT_MAX_LIFETIME"):
        Settings.from_environ({"JWT_SECRET": "x" * 40, "JWT_MAX_LIFETIME": "3600"}, env_file=None)
    with pytest.raises(SettingsError, match=r"^CORS_ORIGINS"):
        Settings.from_environ({"JWT_SECRET": "x" * 40, "CORS_ORIGINS": "app.example.com"}, env_file=None)


def test_the_python_requirement_is_what_the_code_needs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.11"  # asyncio.timeout, tomllib, ...
    assert project["tool"]["ruff"]["target-version"] == "py311"


def _pem(key: Any, *, private: bool = True, password: bytes | None = None) -> str:
    from cryptography.hazmat.primitives import serialization

    if not private:
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption).decode()


def _bad_keys() -> dict[str, tuple[dict[str, str], str]]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_pem = _pem(rsa_key)
    broken = rsa_pem.replace(rsa_pem.splitlines()[5], "!!not base64 at all!!")
    return {
        "plain string for RS256": ({"JWT_ALGORITHM": "RS256", "JWT_SECRET": "hunter2-" * 5}, "JWT_SECRET"),
        "no key for RS256": ({"JWT_ALGORITHM": "RS256"}, "JWT_SECRET"),
        "malformed PEM": ({"JWT_ALGORITHM": "RS256", "JWT_SECRET": broken}, "JWT_SECRET"),
        "EC key for RS256": ({"JWT_ALGORITHM": "RS256", "JWT_SECRET": _pem(ec_key)}, "JWT_SECRET"),
        "RSA key for ES256": ({"JWT_ALGORITHM": "ES256", "JWT_SECRET": rsa_pem}, "JWT_SECRET"),
        "P-256 key for ES384": ({"JWT_ALGORITHM": "ES384", "JWT_SECRET": _pem(ec_key)}, "JWT_SECRET"),
        "Ed25519 key for ES256": (
            {"JWT_ALGORITHM": "ES256", "JWT_SECRET": _pem(ed25519.Ed25519PrivateKey.generate())},
            "JWT_SECRET",
        ),
        "encrypted PEM": ({"JWT_ALGORITHM": "RS256", "JWT_SECRET": _pem(rsa_key, password=b"pw")}, "JWT_SECRET"),
        "public key to sign with": (
            {"JWT_ALGORITHM": "RS256", "JWT_SECRET": _pem(rsa_key, private=False)},
            "JWT_SECRET",
        ),
        "PEM for HS256": ({"JWT_SECRET": rsa_pem}, "JWT_SECRET"),
        "bad previous key (RS256)": (
            {"JWT_ALGORITHM": "RS256", "JWT_SECRET": rsa_pem, "JWT_PREVIOUS_SECRETS": "hunter2-old-secret"},
            "JWT_PREVIOUS_SECRETS",
        ),
        "PEM among HS256 previous keys": (
            {"JWT_SECRET": "x" * 40, "JWT_PREVIOUS_SECRETS": f"old-secret-hunter2,{rsa_pem}"},
            "JWT_PREVIOUS_SECRETS",
        ),
        "bad public key": (
            {"JWT_ALGORITHM": "RS256", "JWT_SECRET": rsa_pem, "JWT_PUBLIC_KEY": _pem(ec_key, private=False)},
            "JWT_PUBLIC_KEY",
        ),
        "unknown algorithm": ({"JWT_ALGORITHM": "PS256", "JWT_SECRET": "x" * 40}, "JWT_ALGORITHM"),
    }


BAD_KEYS = _bad_keys()


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_a_bad_key_setting_names_the_variable_and_never_the_key(case: str) -> None:
    environ, name = BAD_KEYS[case]
    with pytest.raises(SettingsError, match=f"^{re.escape(name)}") as caught:
        Settings.from_environ(environ, env_file=None)
    message = str(caught.value)
    assert "\n" not in message and "hunter2" not in message and "BEGIN" not in message and "MII" not in message


def test_start_up_with_a_bad_key_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """The case seen: RS256 with a plain string, under uvicorn as the Procfile starts it."""
    result, lines = start_up(tmp_path, JWT_ALGORITHM="RS256", JWT_SECRET="hunter2-" * 5)
    assert result.returncode == 2
    assert lines == ["kapi: configuration error: JWT_SECRET is not a valid key for JWT_ALGORITHM=RS256: "
                     "RS256 takes a PEM key, not a secret"]  # fmt: skip
    assert "Traceback" not in result.stderr + result.stdout and "hunter2" not in result.stderr

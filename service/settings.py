"""The one settings object: environment variables, also read from ``.env`` (DESIGN.md's table)."""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from starlette.config import Config
from starlette.datastructures import Secret

from gateway.claims import HMAC_ALGORITHMS
from gateway.ratelimit import Limit, parse_limits
from gateway.signing_keys import make_key, split_keys

T = TypeVar("T")
logger = logging.getLogger("service.settings")

RedisMode = Literal["standalone", "cluster", "sentinel"]
RateLimitFallback = Literal["local", "open", "closed"]
_ALGORITHMS = ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
_DEV_SECRET_FILE = Path(".kapi/dev-jwt-secret")

#: Variables whose value is never shown in a message, and those shown with the URL's password hidden.
_SECRET_VARIABLES = frozenset({"JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_PREVIOUS_SECRETS", "REDIS_PASSWORD"})
_URL_VARIABLES = frozenset({"REDIS_URL", "DATABASE_URL", "JWT_JWKS_URL"})

#: Secrets this repository ships in examples, tests and old compose files: refused in production, since
#: anyone can read them and mint tokens. (Together with any value that says it is a placeholder.)
SHIPPED_SECRETS = frozenset(
    {
        "change-me-to-a-long-random-secret-before-deploying",
        "test-secret-that-is-long-enough-for-hs256-0123456789",
        "example-secret-example-secret-example-secret",
        "a-test-secret-of-a-decent-length-0123456789",
    }
)
_PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "your-secret", "placeholder")


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***`` (``redis://user:***@host/0``); a lone user part,
    which may be a password too, is hidden whole. Works on malformed URLs as well."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}{sep}{user + ':***' if colon else '***'}@{host}"


def shown(name: str, raw: str) -> str:
    """How a variable's value may appear in a message: never a secret, never a URL's password."""
    if name in _SECRET_VARIABLES:
        return f"{name} (value hidden)"
    if name in _URL_VARIABLES:
        return f"{name}={redact_url(raw)!r}"
    return f"{name}={raw!r}"


def is_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return lowered in SHIPPED_SECRETS or any(word in lowered for word in _PLACEHOLDER_WORDS)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    env: Literal["development", "production"] = "development"
    diagnostics: bool = True
    redis_url: str | None = None
    redis_host: str = "localhost"
    redis_port: int = 6379
    redis_db: int = 0
    redis_username: str | None = None
    redis_password: Secret = field(default_factory=lambda: Secret(""))
    redis_mode: RedisMode = "standalone"
    redis_sentinels: tuple[tuple[str, int], ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_timeout: float = 0.1
    redis_connect_timeout: float = 0.5
    redis_max_connections: int = 100
    key_prefix: str = ""
    database_url: str = "sqlite+aiosqlite:///./kapi.db"
    jwt_secret: Secret = field(default_factory=lambda: Secret(""))
    jwt_public_key: Secret | None = None
    jwt_previous_secrets: tuple[Secret, ...] = ()
    jwt_algorithm: str = "HS256"
    jwt_jwks_url: str | None = None
    jwt_jwks_algorithm: str = "RS256"
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway: int = 30
    jwt_max_lifetime: int = 30 * 86400
    access_token_ttl: int = 86400
    refresh_token_ttl: int = 30 * 86400
    refresh_reuse_grace: int = 30
    rate_limit: tuple[Limit, ...] = (Limit(100, 3600),)
    rate_limit_shadow: bool = False
    rate_limit_tier_claim: str = "tier"
    rate_limit_tiers: Mapping[str, tuple[Limit, ...]] = field(default_factory=lambda: {"pro": (Limit(1000, 3600),)})
    cache_ttl: int = 3600
    cache_miss_ttl: int = 60
    search_cache_ttl: int = 30
    near_cache: bool = True
    #: LOCAL_DECISIONS: the revocation view and rate-limit reservations (a warm request without a Redis
    #: round trip); false: every request takes the gateway's one round trip.
    local_decisions: bool = True
    near_cache_max_entries: int = 10_000
    near_cache_max_bytes: int = 64 * 1024 * 1024
    near_cache_max_age: float = 60.0
    session_ttl: int = 86400
    otp_test_numbers: Mapping[str, str] = field(default_factory=dict)
    otp_max_failures: int = 10
    otp_send_budget: tuple[Limit, ...] = (Limit(1000, 3600),)
    cors_origins: tuple[str, ...] = ()
    auth_fail_open: bool = False
    rate_limit_on_redis_error: RateLimitFallback = "local"
    max_body_size: int = 65536
    max_header_size: int = 16384
    http_header_timeout: float = 10.0
    http_body_timeout: float = 10.0
    trusted_proxies: tuple[str, ...] = ()
    log_level: str = "INFO"
    access_log: bool = True
    feed_max_len: int = 10_000
    feed_heartbeat: float = 15.0
    feed_buffer: int = 1000
    streams_per_user: int = 10

    @property
    def production(self) -> bool:
        return self.env == "production"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env") -> Settings:
        """Read every setting; raise ``SettingsError`` naming the first bad variable."""
        config = _config(environ, env_file)

        def get(name: str, cast: Callable[[str], T], default: str | None) -> T:
            return _read(config, name, cast, default)

        env = get("ENV", _choice("development", "production"), "development")
        production = env == "production"
        secret = get("JWT_SECRET", str, "")
        algorithm = get("JWT_ALGORITHM", _choice(*_ALGORITHMS), "HS256")
        if not secret and production:
            raise SettingsError("JWT_SECRET is required when ENV=production")
        if not secret and algorithm not in HMAC_ALGORITHMS:  # a random development key is an HMAC secret
            raise SettingsError(
                f"JWT_SECRET is required with JWT_ALGORITHM={algorithm}: the PEM private key to sign with"
            )
        if secret and algorithm.startswith("HS") and production and len(secret) < 32:
            raise SettingsError("JWT_SECRET must be at least 32 characters for HMAC in production")
        if secret and production and is_placeholder(secret):
            raise SettingsError(
                "JWT_SECRET is a placeholder shipped with Kapı (anyone can mint tokens with it); "
                "set a long random value, e.g. python -c 'import secrets; print(secrets.token_urlsafe(48))'"
            )
        public_key = get("JWT_PUBLIC_KEY", str, "") or None
        access_ttl = get("ACCESS_TOKEN_TTL", _int_between(1, 86400 * 365), "86400")
        refresh_ttl = get("REFRESH_TOKEN_TTL", _int_between(1, 86400 * 365), str(30 * 86400))
        max_lifetime = max(access_ttl, refresh_ttl)

        settings = cls(
            env=env,  # type: ignore[arg-type]
            diagnostics=get("DIAGNOSTICS", _boolean, "false" if production else "true"),
            redis_url=get("REDIS_URL", _redis_url, "") or None,
            redis_host=get("REDIS_HOST", _nonempty, "localhost"),
            redis_port=get("REDIS_PORT", _int_between(1, 65535), "6379"),
            redis_db=get("REDIS_DB", _int_between(0, 10_000), "0"),
            redis_username=get("REDIS_USERNAME", str, "") or None,
            redis_password=Secret(get("REDIS_PASSWORD", str, "")),
            redis_mode=get("REDIS_MODE", _choice("standalone", "cluster", "sentinel"), "standalone"),  # type: ignore[arg-type]
            redis_sentinels=get("REDIS_SENTINELS", _host_ports, ""),
            redis_sentinel_master=get("REDIS_SENTINEL_MASTER", _nonempty, "mymaster"),
            redis_timeout=get("REDIS_TIMEOUT", _seconds, "0.1"),
            redis_connect_timeout=get("REDIS_CONNECT_TIMEOUT", _seconds, "0.5"),
            redis_max_connections=get("REDIS_MAX_CONNECTIONS", _int_between(1, 100_000), "100"),
            key_prefix=get("KEY_PREFIX", str, ""),
            database_url=get("DATABASE_URL", _database_url, "sqlite+aiosqlite:///./kapi.db"),
            jwt_secret=Secret(secret),
            jwt_public_key=Secret(public_key) if public_key else None,
            jwt_previous_secrets=tuple(Secret(key) for key in get("JWT_PREVIOUS_SECRETS", split_keys, "")),
            jwt_algorithm=algorithm,
            jwt_jwks_url=get("JWT_JWKS_URL", _jwks_url, "") or None,
            jwt_jwks_algorithm=get("JWT_JWKS_ALGORITHM", _choice(*_ALGORITHMS[3:]), "RS256"),
            jwt_issuer=get("JWT_ISSUER", str, "") or None,
            jwt_audience=get("JWT_AUDIENCE", str, "") or None,
            jwt_leeway=get("JWT_LEEWAY", _int_between(0, 300), "30"),
            jwt_max_lifetime=get("JWT_MAX_LIFETIME", _int_between(1, 86400 * 3650), str(max_lifetime)),
            access_token_ttl=access_ttl,
            refresh_token_ttl=refresh_ttl,
            refresh_reuse_grace=get("REFRESH_REUSE_GRACE", _int_between(0, 3600), "30"),
            rate_limit=get("RATE_LIMIT", parse_limits, "100/hour"),
            rate_limit_tiers=get("RATE_LIMIT_TIERS", _tiers, "pro:1000/hour"),
            rate_limit_shadow=get("RATE_LIMIT_SHADOW", _boolean, "false"),
            rate_limit_tier_claim=get("RATE_LIMIT_TIER_CLAIM", _nonempty, "tier"),
            cache_ttl=get("CACHE_TTL", _int_between(1, 86400 * 30), "3600"),
            cache_miss_ttl=get("CACHE_MISS_TTL", _int_between(1, 86400), "60"),
            search_cache_ttl=get("SEARCH_CACHE_TTL", _int_between(1, 86400), "30"),
            near_cache=get("NEAR_CACHE", _boolean, "true"),
            local_decisions=get("LOCAL_DECISIONS", _boolean, "true"),
            near_cache_max_entries=get("NEAR_CACHE_MAX_ENTRIES", _int_between(1, 10_000_000), "10000"),
            near_cache_max_bytes=get("NEAR_CACHE_MAX_BYTES", _int_between(1024, 1 << 40), str(64 * 1024 * 1024)),
            near_cache_max_age=get("NEAR_CACHE_MAX_AGE", _int_between(1, 86400), "60"),
            session_ttl=get("SESSION_TTL", _int_between(1, 86400 * 365), "86400"),
            otp_test_numbers=get("OTP_TEST_NUMBERS", _otp_numbers, ""),
            otp_max_failures=get("OTP_MAX_FAILURES", _int_between(1, 10_000), "10"),
            otp_send_budget=get("OTP_SEND_BUDGET", parse_limits, "1000/hour"),
            cors_origins=get("CORS_ORIGINS", _origins, ""),
            auth_fail_open=get("AUTH_FAIL_OPEN", _boolean, "false"),
            rate_limit_on_redis_error=get("RATE_LIMIT_ON_REDIS_ERROR", _choice("local", "open", "closed"), "local"),  # type: ignore[arg-type]
            max_body_size=get("MAX_BODY_SIZE", _int_between(1024, 64 * 1024 * 1024), "65536"),
            max_header_size=get("MAX_HEADER_SIZE", _int_between(1024, 1024 * 1024), "16384"),
            http_header_timeout=get("HTTP_HEADER_TIMEOUT", _timeout, "10"),
            http_body_timeout=get("HTTP_BODY_TIMEOUT", _timeout, "10"),
            trusted_proxies=get("TRUSTED_PROXIES", _csv, ""),
            log_level=get("LOG_LEVEL", _choice("DEBUG", "INFO", "WARNING", "ERROR"), "INFO"),
            access_log=get("ACCESS_LOG", _boolean, "true"),
            feed_max_len=get("FEED_MAX_LEN", _int_between(10, 10_000_000), "10000"),
            feed_heartbeat=get("FEED_HEARTBEAT", _timeout, "15"),
            feed_buffer=get("FEED_BUFFER", _int_between(1, 1_000_000), "1000"),
            streams_per_user=get("STREAMS_PER_USER", _int_between(1, 10_000), "10"),
        )
        _check_keys(settings, secret)
        if settings.jwt_jwks_url and not (settings.jwt_issuer and settings.jwt_audience):
            raise SettingsError(
                "JWT_JWKS_URL needs JWT_ISSUER and JWT_AUDIENCE: tokens from it are checked against both"
            )
        if settings.jwt_max_lifetime < max_lifetime:
            raise SettingsError(
                f"JWT_MAX_LIFETIME={settings.jwt_max_lifetime} is shorter than the tokens this service mints "
                f"(ACCESS_TOKEN_TTL/REFRESH_TOKEN_TTL up to {max_lifetime} s)"
            )
        if not secret:  # only once every other setting is known to be good
            settings = replace(settings, jwt_secret=Secret(_development_secret()))
        return settings


def _check_keys(settings: Settings, secret: str) -> None:
    """Every key setting loads as a key for ``JWT_ALGORITHM`` (and ``JWT_SECRET`` can sign), or one line
    names the variable and what is wrong with it, never its value."""
    algorithm = settings.jwt_algorithm
    keys = [("JWT_SECRET", secret)] if secret else []
    if settings.jwt_public_key is not None and algorithm not in HMAC_ALGORITHMS:
        keys.append(("JWT_PUBLIC_KEY", str(settings.jwt_public_key)))
    count = len(settings.jwt_previous_secrets)
    for index, key in enumerate(settings.jwt_previous_secrets, 1):
        keys.append((f"JWT_PREVIOUS_SECRETS (entry {index} of {count})", str(key)))
    for name, material in keys:
        try:
            loaded = make_key(material, algorithm)
        except ValueError as exc:
            raise SettingsError(f"{name} is not a valid key for JWT_ALGORITHM={algorithm}: {exc}") from None
        if name == "JWT_SECRET" and loaded.signing is None:
            raise SettingsError(
                f"JWT_SECRET must be a private key for JWT_ALGORITHM={algorithm} (it signs tokens); "
                "a public key alone goes in JWT_PUBLIC_KEY"
            )


def http_timeouts(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> tuple[float, float]:
    """``(HTTP_HEADER_TIMEOUT, HTTP_BODY_TIMEOUT)`` in seconds, read as ``Settings.from_environ`` reads
    them. For the HTTP protocol (``service/protocol.py``), which uvicorn builds apart from the app; raises
    ``SettingsError`` naming a bad one (start-up has already stopped on it when the app is the service)."""
    config = _config(environ, env_file)
    return _read(config, "HTTP_HEADER_TIMEOUT", _timeout, "10"), _read(config, "HTTP_BODY_TIMEOUT", _timeout, "10")


def _config(environ: Mapping[str, str] | None, env_file: str | Path | None) -> Config:
    environ = os.environ if environ is None else environ
    env_path = env_file if env_file is not None and Path(env_file).is_file() else None
    return Config(env_path, environ=environ)


def _read(config: Config, name: str, cast: Callable[[str], T], default: str | None) -> T:
    raw: str | None = config(name, default=default)
    try:
        return cast(raw) if raw is not None else None  # type: ignore[return-value]
    except (ValueError, TypeError) as exc:
        reason = "not a valid value" if name in _SECRET_VARIABLES else str(exc)
        raise SettingsError(f"{shown(name, raw or '')} is invalid: {reason}") from None


def _development_secret() -> str:
    """A random HMAC key kept in ``.kapi/`` so every worker of a development run shares it."""
    try:
        secret = _DEV_SECRET_FILE.read_text().strip()
    except OSError:
        secret = ""
    if not secret:
        secret = secrets.token_urlsafe(48)
        try:
            _DEV_SECRET_FILE.parent.mkdir(exist_ok=True)
            _DEV_SECRET_FILE.touch(mode=0o600)
            _DEV_SECRET_FILE.write_text(secret)
        except OSError:
            pass
    logger.warning(
        "JWT_SECRET is not set: using a generated development key from %s. "
        "Tokens will not verify anywhere else. Set JWT_SECRET (and ENV=production) before deploying.",
        _DEV_SECRET_FILE,
    )
    return secret


def _choice(*allowed: str) -> Callable[[str], str]:
    canonical = {value.lower(): value for value in allowed}

    def cast(raw: str) -> str:
        value = canonical.get(raw.strip().lower())
        if value is None:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return cast


def _boolean(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def cast(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("expected a whole number") from None
        if not low <= value <= high:
            raise ValueError(f"expected a number from {low} to {high}")
        return value

    return cast


def _seconds(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected seconds, e.g. 0.1") from None
    if not 0 < value <= 60:
        raise ValueError("expected seconds between 0 and 60")
    return value


def _timeout(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ValueError("expected seconds, e.g. 10") from None
    if not 0 < value <= 3600:  # also refuses nan and inf
        raise ValueError("expected seconds above 0, at most 3600")
    return value


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw.strip()


def _redis_url(raw: str) -> str:
    if raw and not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    return raw


def _jwks_url(raw: str) -> str:
    if raw and not raw.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]")):
        raise ValueError("expected an https:// URL (plain http only to a loopback address)")
    return raw


def _database_url(raw: str) -> str:
    if "://" not in raw:
        raise ValueError("expected a URL such as sqlite+aiosqlite:///./kapi.db or postgresql://host/db")
    return raw


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _host_ports(raw: str) -> tuple[tuple[str, int], ...]:
    pairs = []
    for item in _csv(raw):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"{item!r} is not host:port")
        pairs.append((host, int(port)))
    return tuple(pairs)


def _tiers(raw: str) -> dict[str, tuple[Limit, ...]]:
    tiers = {}
    for item in _csv(raw):
        name, sep, limits = item.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"{item!r} is not <tier>:<limits>, e.g. pro:1000/hour")
        tiers[name.strip()] = parse_limits(limits)
    return tiers


def _origins(raw: str) -> tuple[str, ...]:
    origins = _csv(raw)
    for origin in origins:
        scheme, sep, host = origin.partition("://")
        if origin != "*" and (not sep or scheme not in ("http", "https") or not host or "/" in host):
            raise ValueError(f"{origin!r} is not an origin such as https://app.example.com (or *)")
    return origins


def _otp_numbers(raw: str) -> dict[str, str]:
    numbers = {}
    for item in _csv(raw):
        phone, sep, code = item.partition(":")
        if not sep or not phone.strip().startswith("+") or not code.strip().isdigit() or len(code.strip()) != 6:
            raise ValueError(f"{item!r} is not +<phone>:<6-digit code>")
        numbers[phone.strip()] = code.strip()
    return numbers

"""``python -m service``: ``serve`` (the run command) and operator tools."""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from gateway.testing import RedisServer, free_port, ping, port_free
from service.settings import Settings, SettingsError

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def procfile_command(name: str = "web", procfile: Path = Path("Procfile")) -> str:
    for line in procfile.read_text().splitlines():
        key, sep, command = line.partition(":")
        if sep and key.strip() == name:
            return command.strip()
    raise SystemExit(f"kapi: no '{name}:' line in {procfile}")


def redis_target(settings: Settings) -> tuple[str, int]:
    if settings.redis_url and not settings.redis_url.startswith("unix://"):
        parts = urlsplit(settings.redis_url)
        return parts.hostname or "localhost", parts.port or 6379
    return settings.redis_host, settings.redis_port


def serve(args: argparse.Namespace) -> int:
    """Run the Procfile's ``web:`` line; bring up a redis-server of our own if none is reachable."""
    quiet = logging.getLogger("service.settings")  # the service says it once, when it starts
    level, quiet.level = quiet.level, logging.ERROR
    try:
        settings = load_settings()
    finally:
        quiet.setLevel(level)
    env = dict(os.environ)
    # The Procfile names bare commands (uvicorn); find them next to this interpreter first.
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.setdefault("HOST", args.host)
    env.setdefault("PORT", str(args.port))
    own: RedisServer | None = None
    if settings.redis_mode == "standalone" and not (settings.redis_url or "").startswith("unix://"):
        host, wanted = redis_target(settings)
        if ping(host, wanted):
            print(
                f"kapi: using the Redis already running at {host}:{wanted} (this command did not start it: "
                "its data, rate-limit counters and revocations included, stays after the run)",
                file=sys.stderr,
            )
        else:
            if host not in LOCAL_HOSTS:
                print(
                    f"kapi: Redis at {host}:{wanted} is unreachable; start it or unset REDIS_URL/REDIS_HOST",
                    file=sys.stderr,
                )
                return 1
            port = wanted if port_free(wanted) else free_port()
            own = RedisServer(port=port, appendonly=True, directory=Path(".kapi/redis"))
            print(
                f"kapi: no Redis reachable at {host}:{wanted}; starting {own.binary} on 127.0.0.1:{port} "
                "(append-only, data kept in .kapi/redis; stopped when the service stops)",
                file=sys.stderr,
            )
            own.start()
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/{settings.redis_db}"
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        # Metrics add up across uvicorn --workers; the directory must start empty.
        metrics_dir = Path(".kapi/metrics").resolve()
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    command = procfile_command()
    print(f"kapi: serving on http://{env['HOST']}:{env['PORT']}  ({command})", file=sys.stderr)
    child: subprocess.Popen[bytes] | None = None
    stopping: list[int] = []

    def forward(signum: int, frame: object) -> None:
        if child is None:
            stopping.append(signum)  # before the child exists: it is stopped as soon as it does
        else:
            child.send_signal(signum)

    # Installed before the child starts: a signal that came between the two left it running, orphaned.
    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    child = subprocess.Popen(["sh", "-c", f"exec {command}"], env=env)
    for signum in stopping:
        child.send_signal(signum)
    try:
        return child.wait()
    finally:
        if own is not None:
            own.stop()
            print("kapi: stopped the redis-server it started", file=sys.stderr)


def load_settings() -> Settings:
    try:
        return Settings.from_environ()
    except SettingsError as exc:
        print(f"kapi: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


async def _mint(phone: str) -> str:
    from service import db
    from service.app import assemble
    from service.redis_client import create_redis
    from service.signin import accepted_phone

    settings = load_settings()
    normalised = accepted_phone(phone, settings.otp_test_numbers)
    if normalised is None:
        raise SystemExit(f"kapi: {phone!r} is not a valid phone number")
    kapi = assemble(settings)
    connections = kapi.connections
    connections.redis = redis = create_redis(settings)
    connections.database = database = await db.connect(settings.database_url)
    try:
        user_id = await kapi.sign_in.users.get_or_create(normalised)
        pair = await kapi.sign_in.open_session(user_id, ip="127.0.0.1", user_agent="python -m service token")
    finally:
        await db.disconnect(database)
        await redis.aclose()
    return pair.access_token


def token(args: argparse.Namespace) -> int:
    """Print an access token for a user (created if new), with a real session: for scripts and load tests."""
    import asyncio

    from gateway import RedisUnavailable

    try:
        print(asyncio.run(_mint(args.phone)))
    except RedisUnavailable as exc:
        print(f"kapi: Redis is unreachable ({exc}); a token needs a session in Redis", file=sys.stderr)
        return 1
    return 0


async def _doctor(settings: Settings) -> list[tuple[str, bool, str]]:
    """The seed's troubleshooting steps, each with a verdict."""
    from gateway.scripts import scripts_loaded
    from service import db
    from service.redis_client import create_redis, describe

    checks: list[tuple[str, bool, str]] = []
    target = describe(settings)
    if settings.redis_mode == "standalone" and not (settings.redis_url or "").startswith(("unix://", "rediss://")):
        host, port = redis_target(settings)
        running = ping(host, port)
        import socket

        try:
            with socket.create_connection((host, port), timeout=1):
                port_open = True
        except OSError:
            port_open = False
        checks.append(("Redis is running", running, f"{host}:{port} {'answers' if running else 'does not answer'}"))
        checks.append(("the port is open", port_open, f"{host}:{port} {'accepts' if port_open else 'refuses'} TCP"))
    client = create_redis(settings)
    try:
        import time as _time

        started = _time.perf_counter()
        await client.ping()
        checks.append(("PING", True, f"PONG from {target} in {(_time.perf_counter() - started) * 1000:.1f} ms"))
        from service.diagnostics import eviction_warnings

        policy = (await client.info("memory")).get("maxmemory_policy")
        warnings = eviction_warnings(policy)
        checks.append(("the eviction policy keeps revocations", not warnings,
                       warnings[0] if warnings else f"maxmemory-policy is {policy}"))  # fmt: skip
        # What a sign-in and the first reads run (the service runs the fused gateway script, never auth_check,
        # and logs out with session_end, never revoke: those two would stay "not loaded" for ever).
        names = ["gateway", "rate_limit", "cache_get", "cache_fill", "session_open"]
        missing = [name for name, ok in (await scripts_loaded(client, names)).items() if not ok]
        checks.append(("scripts are loaded", not missing,
                       "all loaded" if not missing else f"not yet loaded: {', '.join(missing)} "
                       "(normal: each loads itself the first time the service runs it)"))  # fmt: skip
    except Exception as exc:
        checks.append(("PING", False, f"{target}: {type(exc).__name__}: {exc}"))
    finally:
        await client.aclose()
    try:
        database = await db.connect(settings.database_url)
        await database.fetch_val("SELECT 1")
        await db.disconnect(database)
        checks.append(("the database is reachable", True, settings.database_url.split("@")[-1]))
    except Exception as exc:
        checks.append(("the database is reachable", False, f"{type(exc).__name__}: {exc}"))
    return checks


def doctor(args: argparse.Namespace) -> int:
    """Run the troubleshooting steps and print a verdict for each; exit 1 if any failed."""
    import asyncio

    checks = asyncio.run(_doctor(load_settings()))
    # Scripts not yet loaded is not a failure (they load on first use); an evicting policy is a warning.
    warn_only = ("scripts are loaded", "the eviction policy keeps revocations")
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'WARN' if name in warn_only else 'FAIL'}  {name}: {detail}")
    failed = [name for name, ok, _ in checks if not ok and name not in warn_only]
    print("verdict: healthy" if not failed else f"verdict: {len(failed)} problem(s): {', '.join(failed)}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service", description="Kapı listing service")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run the service (starts a local redis-server when none is reachable)")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.set_defaults(handler=serve)
    mint = commands.add_parser("token", help="print an access token for a phone number's user")
    mint.add_argument("--phone", required=True, help="E.164 or national (TR) number, e.g. +905550000001")
    mint.set_defaults(handler=token)
    check = commands.add_parser("doctor", help="check Redis and the database, with a verdict for each step")
    check.set_defaults(handler=doctor)
    args = parser.parse_args(argv)
    return int(args.handler(args))

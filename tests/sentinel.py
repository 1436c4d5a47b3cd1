"""A real Redis Sentinel setup for tests: a master, a replica and one Sentinel, on free ports."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.testing import RedisServer, find_redis_server, free_port, ping


def command(port: int, *words: str) -> bytes:
    """One inline command to a server on 127.0.0.1 (its answer's first 64 KiB)."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall((" ".join(words) + "\r\n").encode())
        time.sleep(0.05)
        return sock.recv(65536)


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def master_port(sentinel_port: int) -> bytes:
    """What Sentinel names as the master now (its reply, with the port in it)."""
    return command(sentinel_port, "SENTINEL", "get-master-addr-by-name", "mymaster")


@contextlib.contextmanager
def sentinel_setup(directory: Path) -> Iterator[tuple[RedisServer, RedisServer, int]]:
    """The master, its replica (linked) and a Sentinel's port; a master is down after 1 s unanswered."""
    master = RedisServer().start()
    replica = RedisServer(extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinel: subprocess.Popen[bytes] | None = None
    try:
        wait_for(lambda: b"master_link_status:up" in command(replica.port, "INFO", "replication"))
        port = free_port()
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
        )
        sentinel = subprocess.Popen([find_redis_server(), str(config), "--sentinel"], stdout=subprocess.DEVNULL)
        wait_for(lambda: ping("127.0.0.1", port))
        wait_for(lambda: str(master.port).encode() in master_port(port))
        # Sentinel has met the replica too (a failover needs it).
        wait_for(lambda: str(replica.port).encode() in command(port, "SENTINEL", "replicas", "mymaster"))
        yield master, replica, port
    finally:
        if sentinel is not None:
            sentinel.terminate()
            sentinel.wait(timeout=10)
        replica.close()
        master.close()

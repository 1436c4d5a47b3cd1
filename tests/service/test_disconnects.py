"""A client that hangs up before its request is complete, against the service as the Procfile runs it:
no traceback, no error line, no 500 in the access log or the metrics; the request is logged as 499."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import httpx

from gateway.testing import RedisServer
from tests.conftest import CODE_A, PHONE_A
from tests.processes import ServiceProcess, service_env


def hang_up_mid_body(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> None:
    """Announce 100 bytes of JSON, send 9, close the socket."""
    head = f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"{head}\r\n".encode() + b'{"phone":')
        time.sleep(0.2)  # the app is waiting for the rest of the body when the FIN arrives


def test_a_client_that_hangs_up_mid_body_is_a_quiet_499(tmp_path: Path) -> None:
    with RedisServer() as redis:
        env = service_env(redis.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}", log_level="INFO")
        with ServiceProcess(env, cwd=tmp_path) as service:
            with httpx.Client(base_url=service.url) as client:
                assert client.post("/auth/otp", json={"phone": PHONE_A}).status_code == 202
                tokens = client.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()
                auth = {"Authorization": f"Bearer {tokens['access_token']}"}
                listing = client.post("/listings", json={"title": "Masa", "price": "5", "city": "Bursa"}, headers=auth)
                routes = [
                    ("POST", "/auth/otp", {}),
                    ("POST", "/auth/login/phone", {}),
                    ("POST", "/auth/refresh", {}),
                    ("POST", "/listings", auth),
                    ("PATCH", listing.headers["location"], auth),
                ]
                for method, path, headers in routes:
                    hang_up_mid_body(service.port, method, path, headers)
                assert client.get("/health").status_code == 200  # still serving
                time.sleep(0.3)  # access-log lines are written in 0.1 s batches
                metrics = client.get("/metrics").text
            log = service.log.read_text()
    for method, path, _ in routes:
        assert re.search(rf'"{method} {re.escape(path)} HTTP/1.1" 499 ', log), (method, path, log[-3000:])
    assert "Traceback" not in log and " ERROR " not in log and "Exception in ASGI application" not in log
    assert '" 500 ' not in log
    assert 'status="499"' in metrics and 'status="500"' not in metrics

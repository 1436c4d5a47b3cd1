"""docs/how-to/monitoring.md: its scripts (docs/examples/monitoring/) run against the service started as
the Procfile starts it, and what the page shows is what they print."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.testing import RedisServer, free_port
from tests.conftest import CODE_A, PHONE_A
from tests.docs.operations import flushed, page, run_script, service
from tests.processes import ServiceProcess

PAGE = "how-to/monitoring.md"


@pytest.fixture(scope="module")
def running(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    """The service in development (diagnostics on), its access log on, after a reader's first steps:
    sign in, create a listing, read it three times, read it anonymously, log out."""
    directory = tmp_path_factory.mktemp("monitoring")
    with service(flushed(redis_server.url), directory, log_level="INFO") as process:
        with httpx.Client(base_url=process.url) as http:
            assert http.post("/auth/otp", json={"phone": PHONE_A}).status_code == 202
            token = http.post("/auth/login/phone", json={"phone": PHONE_A, "code": CODE_A}).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            created = http.post("/listings", json={"title": "Bisiklet", "price": "1250.50", "city": "İstanbul"},
                                headers=auth)  # fmt: skip
            assert created.status_code == 201
            path = f"/listings/{created.json()['id']}"
            assert [http.get(path, headers=auth).headers["x-cache"] for _ in range(3)] == ["MISS", "HIT", "HIT-LOCAL"]
            assert http.get(path).status_code == 200
            assert http.post("/auth/logout", headers=auth).status_code == 204
        yield process


def service_environment(process: ServiceProcess) -> dict[str, str]:
    return {"REDIS_URL": process.env["REDIS_URL"], "DATABASE_URL": process.env["DATABASE_URL"]}


def test_metrics_script_shows_the_lines_the_page_shows(running: ServiceProcess) -> None:
    done = run_script("monitoring/metrics.sh", BASE=running.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(line.startswith("kapi_") for line in lines)
    for expected in [
        'kapi_http_requests_total{method="GET",route="/listings/{listing_id}",status="200"} 4.0',
        'kapi_http_requests_total{method="POST",route="/listings",status="201"} 1.0',
        'kapi_redis_circuit_state{state="closed"} 1.0',
        'kapi_redis_circuit_state{state="open"} 0.0',
        'kapi_near_cache_events_total{event="resets"} 0.0',
        'kapi_cache_events_total{event="hits"}',
    ]:
        assert any(line.startswith(expected) for line in lines), (expected, lines)
    shown = re.search(r"```text\n(kapi_.*?)```", page(PAGE), re.S)
    assert shown
    names = {line.split("{")[0] for line in shown.group(1).splitlines()}
    assert names <= {line.split("{")[0] for line in lines}  # every metric the page shows is one it prints


def test_request_id_comes_back_and_is_on_the_access_log_line(running: ServiceProcess) -> None:
    done = run_script("monitoring/request-id.sh", BASE=running.url)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().lower() == "x-request-id: checkout-42"
    assert "x-request-id: checkout-42" in page(PAGE)
    deadline = time.monotonic() + 3
    while "[checkout-42] 127.0.0.1" not in running.log.read_text():  # written in batches, within 0.1 s
        assert time.monotonic() < deadline, running.log.read_text()[-2000:]
        time.sleep(0.05)
    line = next(line for line in running.log.read_text().splitlines() if "[checkout-42]" in line)
    assert re.search(
        r' INFO kapi\.access \[checkout-42\] 127\.0\.0\.1:\d+ - "GET /health HTTP/1\.1" 200 [\d.]+ms$', line
    )


def test_test_redis_and_ready(running: ServiceProcess) -> None:
    done = run_script("monitoring/test-redis.sh", BASE=running.url)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.splitlines()
    report = httpx.Response(200, content=first).json()
    assert report["status"] == "ok" and report["maxmemory_policy"] == "noeviction" and report["warnings"] == []
    assert report["circuit"] == "closed" and report["keys"]["listing"] == 1 and report["keys"]["complete"] is True
    shown = re.search(r'^\{"status":"ok",.*$', page(PAGE), re.M)
    assert shown and set(httpx.Response(200, content=shown.group(0)).json()) == set(report)  # the same fields
    assert second == '{"status":"ready","redis":"ok","database":"ok"}'
    assert second in page(PAGE)


def test_doctor_with_the_services_environment(running: ServiceProcess) -> None:
    done = run_script("monitoring/doctor.sh", **service_environment(running))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    shown = re.search(r"```text\n(ok    Redis is running.*?)```", page(PAGE), re.S)
    assert shown
    # The page's lines, with this run's address, timing and database.
    assert [line.split(":")[0] for line in lines] == [line.split(":")[0] for line in shown.group(1).splitlines()]
    assert lines[4] == "ok    scripts are loaded: all loaded"
    assert lines[-2:] == ["verdict: healthy", "exit status: 0"]


def test_doctor_when_redis_is_not_running(running: ServiceProcess) -> None:
    port = free_port()
    done = run_script("monitoring/doctor.sh", REDIS_URL=f"redis://127.0.0.1:{port}/0",
                      DATABASE_URL=running.env["DATABASE_URL"])  # fmt: skip
    lines = done.stdout.splitlines()
    assert lines[0] == f"FAIL  Redis is running: 127.0.0.1:{port} does not answer"
    assert lines[1] == f"FAIL  the port is open: 127.0.0.1:{port} refuses TCP"
    assert lines[2].startswith(f"FAIL  PING: standalone redis://127.0.0.1:{port}/0: ConnectionError")
    assert lines[-2:] == ["verdict: 3 problem(s): Redis is running, the port is open, PING", "exit status: 1"]
    assert "verdict: 3 problem(s): Redis is running, the port is open, PING" in page(PAGE)


def test_redis_info(running: ServiceProcess) -> None:
    done = run_script("monitoring/redis-info.sh", REDIS_URL=running.env["REDIS_URL"])
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert [line.split(":")[0] for line in lines[:4]] == [
        "used_memory_human", "maxmemory_human", "maxmemory_policy", "connected_clients",
    ]  # fmt: skip
    assert "maxmemory_policy:noeviction" in lines and "listing:1" in lines


def test_the_page_includes_every_monitoring_script() -> None:
    text = page(PAGE)
    for script in sorted((Path(__file__).resolve().parents[2] / "docs/examples/monitoring").glob("*.sh")):
        assert f'--8<-- "docs/examples/monitoring/{script.name}"' in text, script.name

"""The benchmark harness and the Locust scenario still run (a smoke run: seconds, no thresholds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.testing import RedisServer
from tests.processes import ServiceProcess, service_env

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_smoke_run_produces_table_json_and_chart(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    rows = {row["app"]: row for row in data["rows"]}
    assert list(rows) == ["floor", "kapi", "kapi-one-trip", "kapi-redis", "slowapi", "fastapi"]
    assert all(row["rps_median"] > 0 and row["requests_measured"] > 0 for row in rows.values())
    assert all(row["non_2xx"] == 0 for name, row in rows.items() if name.startswith("kapi"))
    # The strict path: one script call per request, counted by Redis (INFO) and seen sent (MONITOR); the
    # near cache holds the listing, so nothing else is sent.
    strict = rows["kapi-one-trip"]
    assert strict["redis_script_calls_per_request"] == pytest.approx(1.0, abs=0.02)
    assert strict["redis_sent_per_request_monitor"] == pytest.approx(1.0, abs=0.03)
    assert strict["redis_commands_per_request"] > strict["redis_script_calls_per_request"]  # the script's own calls
    assert rows["kapi"]["redis_script_calls_per_request"] < strict["redis_script_calls_per_request"]
    assert rows["kapi"]["redis_sent_per_request_monitor"] < 0.5  # sequential: budget reserved ahead
    assert rows["floor"]["redis_script_calls_per_request"] == 0
    small = data["small_limit"]  # a caller at 100/hour is counted in Redis request by request
    assert small["limit"] == "100/hour" and small["script_calls_per_request"] == 1.0
    assert data["kapi_database_loads_while_measuring"] == 0
    results = (tmp_path / "RESULTS.md").read_text()
    assert "| kapi, LOCAL_DECISIONS=false" in results and "scripts/req (INFO)" in results
    assert (tmp_path / "results.png").stat().st_size > 10_000


@pytest.mark.slow
def test_locust_scenario_runs_headless_against_a_service(tmp_path: Path) -> None:
    numbers = "+905550000001:123456,+905550000002:123456"
    with RedisServer() as redis_server:
        env = service_env(redis_server.url, f"sqlite+aiosqlite:///{tmp_path / 'kapi.db'}",
                          otp_test_numbers=numbers, rate_limit="100/hour")  # fmt: skip
        with ServiceProcess(env, cwd=tmp_path) as service:
            result = subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
                 "-u", "6", "-r", "6", "-t", "6s", "--host", service.url, "--only-summary"],
                cwd=tmp_path, env={**os.environ, "KAPI_TEST_NUMBERS": numbers},
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "kapi locust:" in output
    summary = output.split("kapi locust:")[1].split("\n")[0]
    assert int(summary.split(" requests")[0]) > 20
    assert " 0 failures" in summary, output[-3000:]
    for name in ("POST /auth/login/phone", "GET /listings", "POST /auth/logout"):
        assert f"kapi locust: {name}:" in output


@pytest.mark.slow
def test_search_bench_smoke_run_times_every_shape_on_both_databases(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.search", "--rows", "3000", "--queries", "3", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    shapes = {"common word", "rare word", "no match", "infix (3 chars)", "two words", "2-character query",
              "2 characters, no match", "city + price range", "deep cursor page", "adversarial"}  # fmt: skip
    for database, results in report["results"].items():
        assert set(results) == shapes, database
        assert all(r["cold_p95"] > 0 and r["warm_p95"] > 0 for r in results.values())
        assert results["common word"]["with_results"] == 3 and results["no match"]["with_results"] == 0
        assert results["2 characters, no match"]["with_results"] == 0
        assert results["adversarial"]["queries"] > 150
        # the slowest query seen is reported with what it asked, not only the percentiles
        assert report["worst"][database]["ms"] == pytest.approx(max(r["cold_max"] for r in results.values()), abs=0.01)
        assert report["worst"][database]["params"] and report["worst"][database]["shape"] in shapes
    for shape in ("common word", "2-character query", "city + price range"):  # index searches, not table scans
        plans = [plan for name, plan in report["plans"]["sqlite"].items() if name.startswith(shape)]
        assert plans and not any(line.startswith("SCAN listings") for plan in plans for line in plan), shape
    assert "| common word |" in result.stdout and "Slowest query on sqlite" in result.stdout


@pytest.mark.slow
def test_topologies_smoke_run(tmp_path: Path) -> None:
    out = tmp_path / "topologies.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.topologies", "--smoke", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["app"]: row for row in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["standalone", "standalone-before", "cluster", "cluster-before", "sentinel", "sentinel-before"]
    assert all(row["requests_measured"] > 0 and row["non_2xx"] == 0 for row in rows.values())
    for topology in ("cluster", "sentinel"):
        # A warm read costs no round trip there now, where it cost the gateway's script call and the cache's.
        assert rows[topology]["redis_script_calls_per_request"] < 0.5, rows[topology]
        before = rows[f"{topology}-before"]
        assert before["redis_script_calls_per_request"] >= 1, before
        assert before["redis_sent_per_request_monitor"] >= 1.9, before  # sequential: both trips, every read
    assert "| Cluster (3 masters) | default |" in result.stdout

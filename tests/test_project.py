"""Project files a platform reads: docker-compose.yml against the compose spec, the Procfile."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_is_valid_against_the_compose_specification() -> None:
    checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", str(ROOT / "docker-compose.yml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_redis_has_a_healthcheck_and_append_only_persistence() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "healthcheck:" in text and "condition: service_healthy" in text
    assert '"--appendonly", "yes"' in text


def test_procfile_web_line_runs_uvicorn_on_port() -> None:
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "uvicorn service.main:app" in web and "$PORT" in web.replace("${PORT:-8000}", "$PORT")

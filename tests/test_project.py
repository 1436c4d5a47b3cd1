"""Project files a platform reads: docker-compose.yml against the compose spec, the Procfile."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_docker_compose_is_valid_against_the_compose_specification() -> None:
    checker = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    files = [str(ROOT / "docker-compose.yml"), str(ROOT / "docker-compose.production.yml")]
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", *files], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_redis_has_a_healthcheck_and_append_only_persistence() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    assert "healthcheck:" in text and "condition: service_healthy" in text
    assert '"--appendonly", "yes"' in text


def test_procfile_web_line_runs_uvicorn_on_port() -> None:
    web = next(line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("web:"))
    assert "uvicorn service.main:app" in web and "$PORT" in web.replace("${PORT:-8000}", "$PORT")


def test_compose_ships_no_usable_secret_and_production_requires_one() -> None:
    import yaml

    base = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, service in base["services"].items():
        secret = (service.get("environment") or {}).get("JWT_SECRET")
        assert secret in (None, "${JWT_SECRET:-}"), f"{name} ships a default JWT_SECRET: {secret}"
    production = yaml.safe_load((ROOT / "docker-compose.production.yml").read_text())
    for name in ("app", "app-postgres", "app-workers"):
        environment = production["services"][name]["environment"]
        assert environment["ENV"] == "production"
        assert environment["JWT_SECRET"].startswith("${JWT_SECRET:?")  # compose refuses to start without it
    assert "noeviction" in base["services"]["redis"]["command"]


def test_the_image_runs_as_an_unprivileged_user() -> None:
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert lines.index(f"USER {users[-1]}") < next(i for i, line in enumerate(lines) if line.startswith("CMD"))

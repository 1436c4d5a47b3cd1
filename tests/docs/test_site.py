"""The docs site builds: `mkdocs build --strict` (what ./scripts/docs runs) with no warning, and the
Python API reference renders every public name of ``gateway``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

import gateway

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The site built once into a temporary directory (never the working tree's site/)."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}\n{build.stderr}"
    return out, build.stdout + build.stderr


def test_the_site_builds_with_no_warning(site: tuple[Path, str]) -> None:
    out, log = site
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert not warnings, "\n".join(warnings)
    assert (out / "index.html").is_file()
    assert (out / "search" / "search_index.json").is_file()  # the search works offline, from this file


def inventory(out: Path) -> set[str]:
    """The object names in the site's objects.inv (Sphinx's format, which mkdocstrings writes)."""
    raw = (out / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):  # four header lines, then the zlib-compressed body
        header_end = raw.index(b"\n", header_end) + 1
    body = zlib.decompress(raw[header_end:]).decode()
    return {line.split(" ", 1)[0] for line in body.splitlines() if line}


def test_every_public_name_is_in_the_reference(site: tuple[Path, str]) -> None:
    names = inventory(site[0])
    missing = [name for name in gateway.__all__ if f"gateway.{name}" not in names]
    assert not missing, f"not rendered in docs/reference/api/: {missing}"


def rendered() -> list[str]:
    """The objects the API pages render: each ``::: name`` directive, or its ``members:`` list."""
    names: list[str] = []
    for page in sorted((ROOT / "docs" / "reference" / "api").glob("*.md")):
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines):
            if not line.startswith("::: "):
                continue
            target = line[4:].strip()
            members: list[str] = []
            for option in lines[index + 1 :]:
                if option.strip() and not option.startswith(" "):
                    break
                if option.strip().startswith("- ") and option.startswith("        "):
                    members.append(option.strip()[2:])
            names += [f"{target}.{member}" for member in members] or [target]
    return names


def test_every_rendered_name_and_public_method_has_a_docstring() -> None:
    import griffe

    package = griffe.load("gateway", search_paths=[str(ROOT)], extensions=griffe.load_extensions("griffe_sphinx"))
    names = rendered()
    assert len(names) > 100
    missing = []
    for name in names:
        obj = package[name.removeprefix("gateway.")] if name != "gateway" else package
        if not obj.docstring:
            missing.append(name)
        if obj.is_class:
            for member_name, member in obj.members.items():
                if member.is_function and not member_name.startswith("_") and not member.docstring:
                    missing.append(f"{name}.{member_name}")
    assert not missing, f"rendered in docs/reference/api/ without a docstring: {missing}"


def test_the_readme_is_the_front_door() -> None:
    """Short, with the two commands as they are, and every link into the docs going somewhere."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "## Two commands" in readme
    assert "./scripts/run     # set up and run the service on http://127.0.0.1:8000\n" in readme
    assert "./scripts/test    # set up and run the whole test suite\n" in readme
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme)
    assert len(links) > 20
    missing = [link for link in links if not (ROOT / link).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"

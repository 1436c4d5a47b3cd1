"""Every example in the docs is executed by the tests: the guard.

An inline python/bash/sh/console fence in docs/**/*.md must be a single snippet include
(``--8<-- "examples/…"`` or ``--8<-- "docs/examples/…"``) of a file that exists, or, for the shell
languages, only install and launch lines; and every file the docs include from there is named by some
test under tests/ (which runs it). Blocks that show output (text, http, json, …) are not checked."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUARDED = {"python", "py", "python3", "pycon", "bash", "sh", "shell", "console", "shell-session", "zsh"}
SHELLS = GUARDED - {"python", "py", "python3", "pycon"}
#: What an inline shell block may hold: install and launch commands, and comments.
ALLOWED = (
    "pip install", "./scripts/", "docker compose", "uvicorn", "honcho", "export", "python -m", "python3 -m",
    "source .venv/bin/activate", "gunicorn", "mkdocs", "git clone", "cd", "#",
)  # fmt: skip
INCLUDE = re.compile(r"""^-{1,}8<-{1,}\s+(["'])(?P<path>[^"']+)\1\s*$""")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<mark>`{3,}|~{3,})\s*\{?\.?(?P<lang>[\w+-]*)")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    body: list[str]

    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line} ({self.lang})"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a Markdown page (also those indented in admonitions and tabs)."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        mark = opening["mark"]
        closing = re.compile(rf"^\s*{re.escape(mark[0])}{{{len(mark)},}}\s*$")
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            body.append(lines[j])
            j += 1
        found.append(Block(page, i + 1, opening["lang"].lower(), body))
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in sorted(DOCS.rglob("*.md")) for block in blocks(page)]


def include_of(block: Block) -> str | None:
    """The path a block includes when it is exactly one ``--8<--`` line, else None."""
    content = [line.strip() for line in block.body if line.strip()]
    if len(content) != 1:
        return None
    match = INCLUDE.match(content[0])
    return match["path"].split(":", 1)[0] if match else None  # "file.py:3:9" and "file.py:section" too


def included_files() -> dict[str, list[Block]]:
    files: dict[str, list[Block]] = {}
    for block in all_blocks():
        path = include_of(block)
        if path is not None:
            files.setdefault(path, []).append(block)
    return files


def problem(block: Block) -> str | None:
    if block.lang not in GUARDED:
        return None
    path = include_of(block)
    if path is not None:
        if not path.startswith(("examples/", "docs/examples/")):
            return f"includes {path}: examples live in examples/ or docs/examples/"
        if not (ROOT / path).is_file():
            return f"includes {path}, which does not exist"
        return None
    if block.lang in SHELLS:
        continued = False
        for line in block.body:
            text = line.strip()
            if text and not continued and not text.startswith(ALLOWED):
                return f"runs {text!r} inline: put it in a docs/examples/ script that a test runs and include it"
            continued = text.endswith("\\")
        return None
    return "shows Python inline: put it in a file under docs/examples/ that a test runs and include it"


def test_the_guard_tells_allowed_blocks_from_others(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        '```python\n--8<-- "examples/fastapi_app.py"\n```\n\n'
        '!!! note\n    ```py\n    print("inline")\n    ```\n\n'
        "```bash\npip install kapi\nuvicorn app:app \\\n  --port 8000\n```\n\n"
        "```console\ncurl -s http://127.0.0.1:8000/\n```\n\n"
        '```python\n--8<-- "examples/nothing_here.py"\n```\n\n'
        "```text\nanything goes\n```\n"
    )
    found = blocks(page)
    assert [block.lang for block in found] == ["python", "py", "bash", "console", "python", "text"]
    reasons = [problem(block) for block in found]
    assert reasons[0] is None and reasons[2] is None and reasons[5] is None
    assert "Python inline" in str(reasons[1]) and "curl" in str(reasons[3]) and "does not exist" in str(reasons[4])
    assert include_of(found[0]) == "examples/fastapi_app.py"


def test_every_inline_code_block_is_an_executed_example_or_a_launch_command() -> None:
    problems = [f"{block.where()}: {reason}" for block in all_blocks() if (reason := problem(block))]
    assert not problems, "\n".join(problems)


def test_every_included_example_is_run_by_a_test() -> None:
    tests = [path.read_text() for path in (ROOT / "tests").rglob("*.py")]
    missing = []
    for path, used in sorted(included_files().items()):
        if not path.startswith(("examples/", "docs/examples/")):
            continue
        name, stem = Path(path).name, Path(path).stem
        quoted = re.compile(rf"""["']{re.escape(stem)}["']""")
        if not any(name in text or quoted.search(text) for text in tests):
            missing.append(f"{path} (shown at {used[0].where()})")
    assert not missing, "no test under tests/ names these included examples:\n" + "\n".join(missing)

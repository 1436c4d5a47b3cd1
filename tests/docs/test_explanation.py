"""The Explanation pages and the operations how-tos point to the tests that show each claim
(``tests/x.py::test_name``, or ``::test_name`` for another test in the file named just before): every
one of those tests exists, so a renamed or deleted test cannot leave a page pointing at nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [
    "explanation/guarantees.md",
    "explanation/failure-behaviour.md",
    "explanation/architecture.md",
    "how-to/production.md",
]
REFERENCE = re.compile(r"`(?P<file>tests/[\w/]+\.py)?::(?P<name>\w+)`")


def references(text: str) -> list[tuple[str, str]]:
    """(file, test name) for each reference, ``::name`` resolved against the last file named."""
    found, current = [], None
    for match in REFERENCE.finditer(text):
        current = match["file"] or current
        assert current, f"::{match['name']} names no file before it"
        found.append((current, match["name"]))
    return found


@pytest.mark.parametrize("name", PAGES)
def test_every_test_a_page_names_exists(name: str) -> None:
    text = (ROOT / "docs" / name).read_text()
    missing = []
    for file, test in references(text):
        path = ROOT / file
        if not path.is_file() or not re.search(rf"^\s*(async )?def {test}\(", path.read_text(), re.M):
            missing.append(f"{file}::{test}")
    assert not missing, f"docs/{name} names tests that do not exist:\n" + "\n".join(missing)


def test_the_references_are_read_as_written() -> None:
    text = "`tests/a.py::test_one`, `::test_two`; `tests/b/c.py::test_three`"
    assert references(text) == [("tests/a.py", "test_one"), ("tests/a.py", "test_two"), ("tests/b/c.py", "test_three")]

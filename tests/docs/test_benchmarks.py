"""docs/explanation/benchmarks.md quotes bench/RESULTS.md as it stands: every table row and run line of the
HTTP, search, rate-limit and streams sections is on the page (a new run that is not copied there fails
here), and the plot the page shows is the one ``python -m bench`` writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "explanation" / "benchmarks.md"
RESULTS = ROOT / "bench" / "RESULTS.md"


def section(name: str) -> str:
    found = re.search(rf"<!-- bench:{name} -->\n(.*?)<!-- /bench:{name} -->", RESULTS.read_text(), re.S)
    assert found, f"no {name} section in bench/RESULTS.md"
    return found.group(1)


def figures(text: str) -> list[str]:
    """The lines that carry measured figures: table rows (not their separators), the run line, the
    comparisons and the small-limit check."""
    return [
        line
        for line in text.splitlines()
        if (line.startswith("|") and not line.startswith("|---"))
        or " · " in line
        or line.startswith(("kapi vs", "A caller at a small limit"))
    ]


@pytest.mark.parametrize("name", ["http", "search", "ratelimit", "streams"])
def test_the_page_quotes_the_recorded_figures(name: str) -> None:
    page = PAGE.read_text()
    lines = figures(section(name))
    assert lines
    missing = [line for line in lines if line.split(" · ")[0] not in page]
    assert not missing, f"bench/RESULTS.md ({name}) has figures the page does not show:\n" + "\n".join(missing)


def test_the_plot_is_the_one_the_bench_writes() -> None:
    image = ROOT / "docs" / "explanation" / "img" / "results.png"
    assert image.resolve() == (ROOT / "bench" / "results.png").resolve()  # a link, never a stale copy
    assert "](img/results.png)" in PAGE.read_text()

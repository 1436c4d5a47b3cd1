"""``bench/RESULTS.md``: one section per benchmark, each rewritten only by its own script."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ORDER = ("http", "search", "ratelimit")


def write_section(name: str, text: str, path: Path = RESULTS) -> None:
    """Replace the section ``name`` of the results file (kept between HTML comment markers)."""
    current = path.read_text() if path.exists() else ""
    sections = dict(re.findall(r"<!-- bench:(\w+) -->\n(.*?)<!-- /bench:\1 -->\n", current, re.S))
    if not sections and current.strip():  # a file from before the sections: it was the HTTP one
        sections["http"] = current.removeprefix("# Benchmark results\n").lstrip("\n")
    sections[name] = text.rstrip("\n") + "\n"
    names = [n for n in ORDER if n in sections] + sorted(set(sections) - set(ORDER))
    body = "".join(f"<!-- bench:{n} -->\n{sections[n]}<!-- /bench:{n} -->\n\n" for n in names)
    path.write_text("# Benchmark results\n\n" + body)


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor()}, {os.cpu_count()} cores, Python {platform.python_version()}"

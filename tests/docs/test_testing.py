"""The testing how-to: a user's suite (docs/examples/testing/: pyproject.toml opting in, myapp.py,
test_myapp.py) runs green in a directory of its own with Kapı's pytest plugin."""

from __future__ import annotations

import pytest

from tests.docs.walkthrough import EXAMPLES, ROOT


def test_the_users_suite_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    for name in ("pyproject.toml", "myapp.py", "test_myapp.py"):
        (pytester.path / name).write_text((EXAMPLES / "testing" / name).read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)

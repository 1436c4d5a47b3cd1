"""The rotate-your-secret how-to: docs/examples/rotate-secret/rotation.py runs and prints what the
page shows (rotation.out): during the rotation both keys' tokens pass; after it, the old key's are
refused."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.docs.walkthrough import EXAMPLES, ROOT, check_shown


def test_the_rotation_steps() -> None:
    directory = EXAMPLES / "rotate-secret"
    done = subprocess.run(
        [sys.executable, "rotation.py"], cwd=directory, env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    check_shown(done.stdout, directory / "rotation.out")

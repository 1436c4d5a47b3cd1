"""The docs' shell walkthroughs, run as a reader runs them: an app started the way the page says (a real
uvicorn process on a free port, on a redis-server the tests started), then the page's scripts sourced
one after another in one bash session (so ``$TOKEN`` from one step is there in the next), and each
step's output compared with the output the page shows.

The shown output is a file next to the script (``call.sh`` → ``call.out``), included by the page in a
``text`` block. What changes from run to run is masked on both sides before they are compared (the
``date`` header, tokens, the seconds in ``t=``, ``Reset`` and ``Retry-After``, timestamps).
``KAPI_DOCS_WRITE=1`` writes the files from a run instead, for a page being written; review the diff.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from gateway.testing import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
#: The secret the getting-started pages export (a tutorial value, never for production).
TUTORIAL_SECRET = "tutorial-secret-not-for-production"
_STEP_END = "@@kapi-docs-step-end@@"


def shell_env(base: str, **extra: str) -> dict[str, str]:
    """A reader's shell: this interpreter's ``python`` first on ``PATH``, ``$BASE`` set to the app."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("REDIS_", "JWT_", "OTP_"))}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["BASE"] = base
    env.update(extra)
    return env


class Uvicorn:
    """``python -m uvicorn <app> --port <free port>`` in the repository root, as a page tells the reader
    to start it (``command`` adds arguments); stopped on exit."""

    def __init__(self, app: str, env: Mapping[str, str], *, log: Path, command: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.command = [sys.executable, "-m", "uvicorn", app, "--port", str(self.port), *command]
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        self.env = {**os.environ, **env, "PATH": path}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Uvicorn:
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(self.url + "/", timeout=1)
                return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"{self.command} did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def run_steps(scripts: Sequence[Path], env: Mapping[str, str], *, timeout: float = 120) -> list[str]:
    """Source each script in order in one ``bash`` (``set -e``: a failing command fails the run);
    returns each step's output (stdout and stderr, as a terminal shows them)."""
    for script in scripts:
        assert script.is_file(), script
    program = "set -e\n" + "".join(f'. "{script}"\nprintf "\\n{_STEP_END}\\n"\n' for script in scripts)
    done = subprocess.run(
        ["bash", "-c", program], cwd=ROOT, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, f"the steps failed (exit {done.returncode}):\n{done.stdout}"
    outputs = done.stdout.split(f"\n{_STEP_END}\n")
    assert len(outputs) == len(scripts) + 1 and outputs[-1] == "", done.stdout
    # A body without a final newline (curl prints none) ends its line, as the shell's prompt would.
    return [output.replace("\r\n", "\n").removesuffix("\n") + "\n" for output in outputs[:-1]]


_MASKS = [
    (re.compile(r"(?im)^(date): .*$"), r"\1: <date>"),
    (re.compile(r"\beyJ[\w-]+\.[\w-]+\.[\w-]+"), "<token>"),
    (re.compile(r"\b(t)=\d+"), r"\1=<s>"),
    (re.compile(r"(?im)^(ratelimit-reset|retry-after): \d+$"), r"\1: <s>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<timestamp>"),
    (re.compile(r"(?im)^(content-length): \d+$"), r"\1: <n>"),
    (re.compile(r"retry in \d+ s"), "retry in <s> s"),
    (re.compile(r'(?im)^(etag): ".*"$'), r"\1: <etag>"),
    (re.compile(r'"session_id":"[\w-]+"'), '"session_id":"<id>"'),
    (re.compile(r"curl/[\d.]+"), "curl/<version>"),
]


def masked(text: str) -> str:
    """The output with what changes from run to run replaced by placeholders."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


def check_shown(actual: str, shown: Path) -> None:
    """``actual`` is what the page shows in ``shown`` (after masking); with ``KAPI_DOCS_WRITE=1``, write it."""
    if os.environ.get("KAPI_DOCS_WRITE") == "1":
        shown.write_text(actual)
        return
    assert shown.is_file(), f"{shown} is missing: run with KAPI_DOCS_WRITE=1 to write it"
    assert masked(actual) == masked(shown.read_text()), f"{shown.relative_to(ROOT)} differs from a real run"


def walk(directory: Path, steps: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """Run ``directory/<step>.sh`` for each step in order and check each against ``<step>.out``."""
    outputs = run_steps([directory / f"{step}.sh" for step in steps], env)
    for step, output in zip(steps, outputs, strict=True):
        check_shown(output, directory / f"{step}.out")
    return outputs

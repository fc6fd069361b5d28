"""Probing a command line as a hostile user would: the answer's exit code, its stderr, how long it
took (a hang fails), and whether any file it should not touch changed."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.search_fixtures import REPO, ray_env

ANSWER_SECONDS = 30
"""A mistake must be answered within this long."""


@dataclass(frozen=True)
class Answer:
    code: int
    out: str
    err: str
    seconds: float

    def check(self, *, code: int, says: str) -> None:
        """The exit code, one clean message naming what was wrong (no traceback), in time."""
        import re

        assert self.code == code, f"exit {self.code}, expected {code}\n{self.err}"
        assert "Traceback" not in self.err, self.err
        assert re.search(says, self.err), f"{says!r} not in:\n{self.err}"
        assert self.seconds < ANSWER_SECONDS, f"answered after {self.seconds:.0f} s"


class _Timeout(Exception):
    pass


def call(main: Callable[[list[str]], int], argv: list[str], *, cwd: Path | None = None) -> Answer:
    """Run a CLI's ``main`` in this process; an alarm stops it after ANSWER_SECONDS."""
    out, err = io.StringIO(), io.StringIO()

    def alarm(signum: int, frame: object) -> None:
        raise _Timeout

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(ANSWER_SECONDS + 5)
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _cwd(cwd):
            try:
                code = main(argv)
            except SystemExit as e:  # argparse's usage errors
                code = int(e.code or 0)
    except _Timeout:
        code = -1
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Answer(code, out.getvalue(), err.getvalue(), time.monotonic() - started)


def run(module: str, argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Answer:
    """Run ``python -m module`` in a fresh process (for what starts Ray or could hang in C)."""
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd or REPO, env=env or ray_env(),
                              capture_output=True, text=True, timeout=ANSWER_SECONDS + 30)
    except subprocess.TimeoutExpired as e:
        return Answer(-1, str(e.stdout or ""), str(e.stderr or ""), time.monotonic() - started)
    return Answer(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@contextlib.contextmanager
def _cwd(path: Path | None) -> Iterator[None]:
    if path is None:
        yield
        return
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` -> a hash of its bytes (what must not change)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out

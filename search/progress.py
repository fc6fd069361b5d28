"""The live progress line of a search: counts, best value, elapsed time and ETA.

On a terminal it redraws one line (at most once a second); in a log file it writes a line when
something changed, or once a minute.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from search.study import Counts, Study

__all__ = ["Progress", "progress_line"]


def progress_line(study: Study, start: Counts) -> str:
    """``[name] 3/8 finished: 2 complete, 1 pruned, 0 failed | 2 running | best ... | elapsed, ETA``."""
    c = study.counts()
    elapsed = time.monotonic() - study.started
    done_here = c.finished - start.finished
    left = max(0, study.budget - c.finished)
    eta = _clock(elapsed / done_here * left) if done_here else "?"
    best = ""
    trials = study.best_trials()
    if trials:
        t = trials[0]
        best = f"best {', '.join(f'{v:.4f}' for v in t.values)} (trial {t.number}) | "
    return (f"[{study.name}] {c.finished}/{study.budget} finished: {c.complete} complete, {c.pruned} pruned, "
            f"{c.failed} failed | {len(study.in_flight)} running | {best}{_clock(elapsed)} elapsed, ETA {eta}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Draws :func:`progress_line` to ``stream`` (stderr by default)."""

    def __init__(self, study: Study, stream: TextIO | None = None) -> None:
        self.study, self.stream = study, stream or sys.stderr
        self.last_draw = self.last_print = 0.0
        self.last_line = ""
        self.start = study.counts()
        self.tty = self.stream.isatty()

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < (1.0 if self.tty else 15.0):
            return
        self.last_draw = now
        line = progress_line(self.study, self.start)
        if not self.tty and line.split(" | ")[:3] == self.last_line.split(" | ")[:3] and now - self.last_print < 60:
            return  # a log file gets a line when something changed, or once a minute
        self.last_line, self.last_print = line, now
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()

    def end(self) -> None:
        self.draw(force=True)
        if self.tty:
            self.stream.write("\n")

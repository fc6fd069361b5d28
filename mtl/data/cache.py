"""Cache folders that several processes may build at once (parallel trials on one machine).

Each process writes into a temporary folder of its own and renames it into place; the first
rename wins, the others drop their copy and read the winner's. A reader never sees half a
folder, and every process ends up with the same cached artefact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def scratch(where: Path) -> Path:
    """A temporary folder beside `where`, private to this process."""
    return where.with_name(f"{where.name}.tmp{os.getpid()}")


def publish(tmp: Path, where: Path) -> None:
    """Move `tmp` to `where`, unless another process got there first (then drop `tmp`)."""
    try:
        os.rename(tmp, where)  # atomic; fails on an existing non-empty folder
    except OSError:
        if not where.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)

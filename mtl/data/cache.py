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


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file whole or not at all: readers, and a second process writing the same file
    (two search drivers exporting best.yaml), never see it half written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)

"""Files written whole or not at all, and line files read up to a line cut by a crash.

Every file a run or a study writes goes through here: a reader (or a second process writing the
same file, such as two search drivers exporting best.yaml) sees the old file or the new one,
never half of one. Folders that several processes build at once (a tokenizer cache) are built
in a private scratch folder and renamed into place; the first rename wins.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["finite", "publish", "read_jsonl", "recover_dir", "replace_dir", "replace_with", "scratch", "write_bytes",
           "write_json", "write_text"]


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


@contextmanager
def replace_with(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path``; on a clean exit it replaces ``path`` atomically,
    on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = _tmp(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` whole or not at all."""
    with replace_with(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text whole or not at all."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write JSON (indented, newline-terminated) whole or not at all."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def finite(value: Any) -> Any:
    """The value with every NaN or infinite number as None: standard JSON (an undefined metric is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSON-lines file, up to the first line that does not parse (a line cut
    by a crash, or one being written right now); [] when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not isinstance(record, dict):
            break
        records.append(record)
    return records


def scratch(where: Path) -> Path:
    """A temporary folder beside ``where``, private to this process."""
    return where.with_name(f"{where.name}.tmp{os.getpid()}")


def publish(tmp: Path, where: Path) -> None:
    """Move ``tmp`` to ``where``, unless another process got there first (then drop ``tmp``)."""
    try:
        os.rename(tmp, where)  # atomic; fails on an existing non-empty folder
    except OSError:
        if not where.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def replace_dir(tmp: Path, where: Path) -> None:
    """Put the finished folder ``tmp`` in the place of ``where`` (which may exist).

    The old folder is moved aside, the new one renamed into place, the old one removed: a
    reader finds the old folder or the new one. (A crash in the instant between the two
    renames leaves only ``.<name>.old<pid>``; :func:`recover_dir` puts it back.)
    """
    old = where.with_name(f".{where.name}.old{os.getpid()}")
    if where.exists():
        os.rename(where, old)
    os.rename(tmp, where)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(where: Path) -> None:
    """Put back the folder a crash in :func:`replace_dir` left aside (nothing when ``where`` exists)."""
    if where.exists():
        return
    aside = sorted(where.parent.glob(f".{where.name}.old*")) if where.parent.is_dir() else []
    if aside:
        os.rename(aside[-1], where)

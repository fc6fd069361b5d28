"""Parsing the fields of a QE data file, every problem naming where: the file, the member or
column, the line or row. Shared by the MLQE-PE reader and the table reader. Light: no torch."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl.errors import MtlError

__all__ = ["IGNORE", "TAGS", "DataError", "Where", "lines", "score", "tags", "words"]

TAGS = {"OK": 0, "BAD": 1}
"""Tag text -> value (mtl.metrics: 0 = OK, 1 = BAD)."""
IGNORE = -100
"""A gap tag the data does not give (word-only tags): ignored by the loss and the scores."""


class DataError(MtlError, ValueError):
    """A problem in the data files or in the arguments naming them.

    The message reads ``<file>: <member>: line <n>: <what was wrong>, expected <what>`` (a
    tarball's member) or ``<file>: row <n>, column '<name>': ...`` (a table).
    """


@dataclass(frozen=True)
class Where:
    """A place in a data file: a tarball's member (or an extracted file) by line, or a table's
    column by row."""

    file: Path | str
    part: str | None = None
    """The member's name, or ``column 'x'``."""
    unit: str = "line"
    """``line`` (members) or ``row`` (tables: rows count from 1, the header not counted)."""

    def error(self, n: int, what: str, expected: str) -> DataError:
        if self.unit == "row":
            column = f", {self.part}" if self.part else ""
            return DataError(f"{self.file}: row {n}{column}: {what}, expected {expected}")
        member = f" {self.part}:" if self.part else ""
        return DataError(f"{self.file}:{member} line {n}: {what}, expected {expected}")


def lines(text: str) -> list[str]:
    """Split on newlines only (the data holds other Unicode line separators), final one optional."""
    out = text.split("\n")
    if out[-1] == "":
        out.pop()
    return out


def words(where: Where, n: int, text: Any) -> list[str]:
    """A segment's words (split on whitespace); an empty segment is an error."""
    found = text.split() if isinstance(text, str) else None
    if not found:
        empty = text is None or found is not None  # an empty cell, or only whitespace
        raise where.error(n, "empty segment" if empty else f"got {text!r}", "at least one word")
    return found


def score(where: Where, n: int, text: Any, label: str) -> float:
    """A finite number (from text, or a number a table already holds)."""
    try:
        value = float(text)
    except (TypeError, ValueError) as e:
        raise where.error(n, f"{label} {text!r} is not a number", "a finite float") from e
    if isinstance(text, bool) or not math.isfinite(value):
        raise where.error(n, f"{label} {text!r} is not finite", "a finite float")
    return value


def tags(where: Where, n: int, text: str | Sequence[str], what: str, expected: Sequence[int], rule: str) -> list[int]:
    """OK/BAD tags (a space-separated string or a list); ``what`` says what they tag (``"3 MT
    words"``), ``expected`` the counts allowed and ``rule`` how many in words."""
    found = text.split() if isinstance(text, str) else list(text)
    bad = next((t for t in found if t not in TAGS), None)
    if bad is not None:
        raise where.error(n, f"tag {bad!r}", "OK or BAD")
    if len(found) not in expected:
        raise where.error(n, f"got {len(found)} tags for {what}", f"{' or '.join(map(str, expected))} ({rule})")
    return [TAGS[t] for t in found]

"""Data sources: one row per reader. A dataset of the config (`data.datasets`) names its
source; the trainer, the preflight checks, `mtl predict` and the reports ask the source object
to check, read and fingerprint a split, never test which one it is.

    mlqe   MLQE-PE's layout (tarballs or extracted folders; renamed folders, columns, suffixes)
    table  a table of your own: TSV, CSV, JSON lines or Parquet

A new reader is a frozen dataclass with a ``source`` field, the methods of :class:`DataSource`
and a row here.
"""

from __future__ import annotations

from typing import Protocol

from mtl.data.mlqe import MlqeSource
from mtl.data.tables import TableSource

__all__ = ["SOURCES", "DataSource"]


class DataSource(Protocol):
    """What every source answers for a dataset ``name`` and a split."""

    @property
    def source(self) -> str:
        """Its row of `SOURCES`."""

    def read(self, name: str, split: str, *, word_probas: bool = False) -> list[dict]:
        """The split's segments in order (keys of `mtl.data.mlqe.MlqeSource.read`); missing labels None."""

    def check(self, name: str, split: str, *, need_da: bool = False) -> object:
        """Raise `DataError` when the split is missing (cheap: no full read); what it returns is its own."""

    def identity(self, name: str, split: str) -> str:
        """A string that changes when the split's files or their reading change."""

    def resolved(self) -> DataSource:
        """The same source with absolute paths."""

    def with_root(self, root: str) -> DataSource:
        """The source read from another MLQE-PE root (``--data``; a table ignores it)."""


SOURCES: dict[str, type] = {"mlqe": MlqeSource, "table": TableSource}
"""``source:`` value -> its options dataclass (whose methods read it)."""

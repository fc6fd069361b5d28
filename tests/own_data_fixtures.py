"""Datasets of your own, as a user would bring them: small TSV, JSON-lines and Parquet tables cut
from the real MLQE-PE segments, with partial labels and columns named otherwise."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtl.data.mlqe import read_pair

TAG = {0: "OK", 1: "BAD"}


def _tags(values: list[int] | None) -> str | None:
    return None if values is None else " ".join(TAG[v] for v in values)


def segments(data_root: Path, pair: str, split: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` real segments of a pair, as plain values."""
    return read_pair(data_root, pair, split)[:n]


def write_tsv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """A header of the rows' keys, then one line per row (None: an empty cell)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0])
    lines = ["\t".join(columns)]
    for row in rows:
        lines.append("\t".join("" if row[c] is None else str(row[c]) for c in columns))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def tsv_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Segments as a TSV of a localisation team: its own column names, every third DA missing,
    every fourth row without tags, post-edits on half the rows."""
    out = []
    for i, r in enumerate(records):
        out.append({"seg": f"s{i}", "source": " ".join(r["src"]), "target": " ".join(r["mt"]),
                    "score": None if i % 3 == 0 else r["da"], "nmt": r["model_score"],
                    "hter": r["hter"], "post_edit": " ".join(r["pe"]) if i % 2 else None,
                    "tags": None if i % 4 == 0 else _tags(r["mt_tags"]), "src_tags": _tags(r["src_tags"])})
    return out


TSV_COLUMNS = {"src": "source", "mt": "target", "da": "score", "model_score": "nmt", "pe": "post_edit",
               "mt_tags": "tags", "id": "seg"}
"""How the TSV above maps onto our fields (hter and src_tags keep their names)."""


def write_jsonl(path: Path, records_by_split: dict[str, list[dict[str, Any]]], *, lp: str) -> Path:
    """One JSON-lines file holding every split (a ``split`` column), tags as lists of MT words
    only (no gaps), DA on every other row, the pair in a column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for split, records in records_by_split.items():
            for i, r in enumerate(records):
                row = {"split": split, "lang": lp, "src": " ".join(r["src"]), "mt": " ".join(r["mt"]),
                       "da": r["da"] if i % 2 == 0 else None, "model_score": r["model_score"],
                       "mt_tags": [TAG[t] for t in r["mt_tags"][1::2]]}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"src": [" ".join(r["src"]) for r in records], "mt": [" ".join(r["mt"]) for r in records],
                      "da": [r["da"] for r in records], "hter": [r["hter"] for r in records],
                      "src_tags": [[TAG[t] for t in r["src_tags"]] for r in records]})
    pq.write_table(table, path)
    return path


def own_datasets(root: Path, data_root: Path) -> dict[str, dict[str, Any]]:
    """Three datasets (``data.datasets`` entries): a TSV per split with renamed columns, one
    JSON-lines file with a split column, a Parquet file per split."""
    train, dev = segments(data_root, "en-de", "train", 64), segments(data_root, "en-de", "dev", 24)
    ro_train, ro_dev = segments(data_root, "ro-en", "train", 48), segments(data_root, "ro-en", "dev", 20)
    write_tsv(root / "team" / "train.tsv", tsv_rows(train))
    write_tsv(root / "team" / "dev.tsv", tsv_rows(dev))
    write_jsonl(root / "vendor" / "all.jsonl", {"train": ro_train, "dev": ro_dev}, lp="ro-en")
    write_parquet(root / "pq" / "train.parquet", train[:40])
    write_parquet(root / "pq" / "dev.parquet", dev[:16])
    return {
        "team": {"source": "table", "splits": {"train": str(root / "team" / "train.tsv"),
                                               "dev": str(root / "team" / "dev.tsv")},
                 "columns": dict(TSV_COLUMNS), "pair": "en-de"},
        "vendor": {"source": "table", "path": str(root / "vendor" / "all.jsonl"), "split_column": "split",
                   "pair_column": "lang"},
        "pq": {"source": "table", "splits": {"train": str(root / "pq" / "train.parquet"),
                                             "dev": str(root / "pq" / "dev.parquet")}},
    }

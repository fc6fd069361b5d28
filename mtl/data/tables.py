"""Datasets of your own in a table: TSV, CSV, JSON lines or Parquet, one row per segment.

A row has the source and the MT output and any of the labels (DA or another sentence score,
HTER, a post-edit, word tags), the NMT system's own score and log-probs, and an id; a
label a row lacks (an empty cell, null) is simply missing: that row trains the other tasks. The
``columns`` option maps our field names to the file's (a field not listed is looked up under its
own name). Splits come one file each, or from a split column of one file. Text formats are read
as a stream, Parquet in record batches. Every problem names the file, the row and the column.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtl.config_loader import Problem
from mtl.config_loader import check as check_problems
from mtl.data.parse import IGNORE, DataError, Where, score, tags, words

__all__ = ["FIELDS", "FORMATS", "TableSource", "iter_records", "read_file"]

FIELDS = {
    "id": "an id of the segment, written back beside its predictions",
    "src": "the source sentence (required)",
    "mt": "the machine translation (required)",
    "pe": "its post-edit",
    "da": "a sentence score, higher is better (z-scored DA, MQM, ...)",
    "hter": "HTER of the post-edit, in [0, 1]",
    "model_score": "the NMT system's own sentence score",
    "mt_tags": "OK/BAD per MT word, with or without the gaps around them (2n+1 or n tags)",
    "src_tags": "OK/BAD per source word",
    "nmt_tokens": "the NMT system's output tokens (BPE or SentencePiece pieces)",
    "nmt_logprobs": "one log-prob per NMT token, then one for <eos>",
}
"""Our field -> what it holds; a table's columns map onto these."""
REQUIRED = ("src", "mt")
NUMBERS = ("da", "hter", "model_score")
"""The fields of one number per segment."""
FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl",
           ".parquet": "parquet", ".pq": "parquet"}
"""File suffix -> format (``format: auto``)."""


@dataclass(frozen=True)
class TableSource:
    """A dataset of your own in a table (TSV, CSV, JSON lines or Parquet)."""

    source: Literal["table"] = "table"
    """Which reader (a row of `mtl.data.sources.SOURCES`)."""
    splits: dict[str, str] = field(default_factory=dict)
    """Split -> its file, e.g. {train: data/train.tsv, dev: data/dev.tsv}."""
    path: str | None = None
    """Or one file holding every split, told apart by `split_column`."""
    split_column: str | None = None
    """The column naming each row's split (with `path`)."""
    format: Literal["auto", "tsv", "csv", "jsonl", "parquet"] = "auto"
    """auto: from the file's suffix (.tsv, .csv, .jsonl, .parquet)."""
    columns: dict[str, str] = field(default_factory=dict)
    """Our field -> the file's column, for those named otherwise (e.g. {src: source, da: score})."""
    pair: str | None = None
    """The language pair of every row, written in WMT-format predictions (default: the dataset's name)."""
    pair_column: str | None = None
    """Or the column holding each row's language pair."""

    def __post_init__(self) -> None:
        problems = []
        if bool(self.splits) == bool(self.path):
            problems.append(Problem("splits", "give either splits: {split: file} or path: with split_column"))
        if self.path and not self.split_column:
            problems.append(Problem("split_column", "must name the column of each row's split (path holds them all)"))
        for key in self.columns:
            if key not in FIELDS:
                problems.append(Problem(f"columns.{key}", f"unknown field {key!r}", f"valid: {', '.join(FIELDS)}"))
        if self.pair and self.pair_column:
            problems.append(Problem("pair", "give pair or pair_column, not both"))
        for file in [*self.splits.values(), *([self.path] if self.path else [])]:
            if self.format == "auto" and Path(file).suffix.lower() not in FORMATS:
                problems.append(Problem("format", f"cannot tell the format of {file!r} from its suffix",
                                        "name it .tsv, .csv, .jsonl or .parquet, or set format"))
        check_problems(problems)

    def file(self, name: str, split: str) -> Path:
        """The file of a split.

        Raises:
            DataError: The dataset has no file for the split.
        """
        if self.path:
            return Path(self.path)
        if split not in self.splits:
            raise DataError(f"dataset {name!r}: no {split} split; its splits: {', '.join(self.splits)} "
                            f"(data.datasets.{name}.splits)")
        return Path(self.splits[split])

    def kind(self, path: Path) -> str:
        return self.format if self.format != "auto" else FORMATS[path.suffix.lower()]


    def resolved(self) -> TableSource:
        """The same source with absolute file paths (for a process in another folder)."""
        return dataclasses.replace(self, splits={k: str(Path(v).resolve()) for k, v in self.splits.items()},
                                   path=str(Path(self.path).resolve()) if self.path else None)

    def with_root(self, root: str) -> TableSource:
        """Itself: ``--data`` names an MLQE-PE root, not a table."""
        return self


    def read(self, name: str, split: str, *, word_probas: bool = False) -> list[dict]:
        """The segments of one split of a table dataset, in file order (see `mtl.data.mlqe.MlqeSource.read`
        for the keys); labels a row lacks are None.

        Raises:
            DataError: A missing file, split or column; an unreadable or malformed row (file, row, column).
        """
        path = self.file(name, split)
        self.check(name, split)
        mapping = {**{f: f for f in FIELDS}, **self.columns}
        if self.split_column:
            mapping["_split"] = self.split_column
        if self.pair_column:
            mapping["_pair"] = self.pair_column
        out: list[dict] = []
        splits_seen: set[str] = set()
        for _, record in iter_records(path, self.kind(path), mapping, explicit=set(self.columns),
                                      word_probas=word_probas):
            if self.split_column:
                splits_seen.add(str(record["_split"]))
                if str(record.pop("_split")) != split:
                    continue
            record["index"] = len(out)
            record["pair"] = name
            record["lp"] = record.pop("_pair", None) or self.pair or name
            out.append(record)
        if not out:
            held = f" (column {self.split_column!r} holds: {', '.join(sorted(splits_seen)) or 'nothing'})" \
                if self.split_column else ""
            raise DataError(f"{path}: no segment of the {split} split of dataset {name!r}{held}, expected at least one")
        return out

    def check(self, name: str, split: str, *, need_da: bool = False) -> None:
        """Check, without reading every row, that a split's file is there and has the required columns.

        Raises:
            DataError: The file or split is missing, or a required column is not in its header.
        """
        path = self.file(name, split)
        if not path.is_file():
            raise DataError(f"{path}: no such file (dataset {name!r}, {split} split)")
        header = _header(path, self.kind(path))
        if header is None:  # JSON lines: columns are checked row by row
            return
        needed = [*REQUIRED, *(["model_score"] if need_da else [])]
        for key in needed + [k for k in self.columns if k not in needed]:
            column = self.columns.get(key, key)
            if column not in header:
                raise DataError(f"{path}: column {column!r} ({key}): no such column, expected one of the header: "
                                f"{', '.join(header)}")

    def identity(self, name: str, split: str) -> str:
        """What changes when the file or its reading changes (the cache key of the tokenized split)."""
        path = self.file(name, split)
        stat = path.stat() if path.exists() else None
        return f"{path.resolve()}:{stat.st_size if stat else 0}:{stat.st_mtime_ns if stat else 0}:{self!r}"


def read_file(path: str | Path, *, columns: Mapping[str, str] | None = None, fmt: str = "auto",
              word_probas: bool = False, need: Mapping[str, str] | None = None) -> Iterator[dict]:
    """The segments of a table file as a stream (for predicting a large file): no split, labels
    optional; a row without an id gets its row number (JSON lines: its line number).

    Args:
        path: The file.
        columns: Our field -> the file's column, for those named otherwise.
        fmt: auto (from the suffix), tsv, csv, jsonl or parquet.
        word_probas: Read the NMT tokens and their log-probs (``nmt_tokens``, ``nmt_logprobs``).
        need: Fields every row must have -> why (e.g. ``{"model_score": "a glass-box feature reads it"}``).

    Raises:
        DataError: An unknown format, a missing column (before any row is read), a malformed row
            or one that lacks a needed value.
    """
    path = Path(path)
    kind = fmt if fmt != "auto" else FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: cannot tell the format from the suffix; name it .tsv, .csv, .jsonl or .parquet")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    need = dict(need or {})
    if word_probas:
        need.setdefault("nmt_tokens", "the glass-box features read the NMT tokens")
        need.setdefault("nmt_logprobs", "the glass-box features read the NMT log-probs")
    mapping = {**{f: f for f in FIELDS}, **(columns or {})}
    header = _header(path, kind)
    for key in dict.fromkeys([*REQUIRED, *need, *(columns or {})]):
        if header is not None and mapping[key] not in header:
            raise DataError(f"{path}: no column {mapping[key]!r} ({key}: {need.get(key) or FIELDS[key]}), expected "
                            f"one of its columns: {', '.join(header)} (--columns {key}=NAME maps another)")
    return _stream(path, kind, mapping, set(columns or {}), need, word_probas)


def _stream(path: Path, kind: str, mapping: Mapping[str, str], explicit: set[str], need: Mapping[str, str],
            word_probas: bool) -> Iterator[dict]:
    rows = iter_records(path, kind, mapping, explicit=explicit | set(need), word_probas=word_probas)
    for i, (n, record) in enumerate(rows):
        for key, why in need.items():
            if record.get(key) is None:
                raise Where(path, f"column {mapping[key]!r}", unit="row").error(n, "empty", f"a value: {why}")
        record.update(index=i, pair=path.stem, lp=None, id=record["id"] if record["id"] is not None else str(n))
        yield record


def iter_records(path: Path, kind: str, mapping: Mapping[str, str], *, explicit: set[str],
                 word_probas: bool) -> Iterator[tuple[int, dict]]:
    """(row number, segment) for each row of a table; ``mapping`` is our field -> its column."""
    for n, raw in _rows(path, kind):
        yield n, _record(path, n, raw, mapping, explicit, word_probas)


def _record(path: Path, n: int, raw: Mapping[str, Any], mapping: Mapping[str, str], explicit: set[str],
            word_probas: bool) -> dict:
    def where(key: str) -> Where:
        return Where(path, f"column {mapping[key]!r}", unit="row")

    def get(key: str) -> Any:
        column = mapping[key]
        if column not in raw:
            if key in REQUIRED or key in explicit or key.startswith("_"):
                raise where(key).error(n, "no such column", f"one of {', '.join(map(str, raw))}")
            return None
        value = raw[column]
        return None if value is None or (isinstance(value, str) and not value.strip()) else value

    src, mt = words(where("src"), n, get("src")), words(where("mt"), n, get("mt"))
    found_id = get("id")
    record: dict[str, Any] = {"id": None if found_id is None else str(found_id), "src": src, "mt": mt}
    pe = get("pe")
    record["pe"] = _text_words(pe) if pe is not None else None
    for key in NUMBERS:
        value = get(key)
        record[key] = score(where(key), n, value, key) if value is not None else None
    mt_tags = get("mt_tags")
    if mt_tags is not None:
        found = tags(where("mt_tags"), n, mt_tags, f"{len(mt)} MT words", [2 * len(mt) + 1, len(mt)],
                     "words and gaps, 2*words+1, or words only")
        if len(found) == len(mt):  # words only: the gaps are not given
            found = [IGNORE, *(t for tag in found for t in (tag, IGNORE))]
        mt_tags = found
    record["mt_tags"] = mt_tags
    src_tags = get("src_tags")
    record["src_tags"] = tags(where("src_tags"), n, src_tags, f"{len(src)} source words", [len(src)],
                              "one per word") if src_tags is not None else None
    for key in ("_split", "_pair"):
        if key in mapping:
            record[key] = get(key)
    if word_probas:
        tokens, logprobs = get("nmt_tokens"), get("nmt_logprobs")
        if tokens is None or logprobs is None:
            missing = "nmt_tokens" if tokens is None else "nmt_logprobs"
            raise where(missing).error(n, "missing", "the NMT tokens and their log-probs (glass-box features)")
        toks = _text_words(tokens)
        values = [score(where("nmt_logprobs"), n, v, "log-prob") for v in _text_words(logprobs)]
        if len(values) != len(toks) + 1:
            raise where("nmt_logprobs").error(n, f"got {len(values)} log-probs for {len(toks)} NMT tokens",
                                              f"{len(toks) + 1} (one per token, then <eos>)")
        record.update(nmt_tokens=toks, nmt_logprobs=values)
    return record


def _text_words(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else str(value).split()


def _header(path: Path, kind: str) -> list[str] | None:
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if kind == "jsonl":
            return None
        with open(path, encoding="utf-8", newline="") as f:
            header = next(_reader(f, kind), None)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}), expected a UTF-8 {kind.upper()} file") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read its header ({e}), expected a {kind.upper()} file") from e
    if not header:
        raise DataError(f"{path}: empty file, expected a header line and one row per segment")
    return header


def _reader(f: Any, kind: str) -> Any:
    csv.field_size_limit(2**31 - 1)
    if kind == "tsv":  # tabs never occur in a field: no quoting (a lone " is text)
        return csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(f)


def _rows(path: Path, kind: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(row number from 1, column -> value) for each row; the header is not a row."""
    try:
        if kind == "parquet":
            yield from _parquet_rows(path)
            return
        with open(path, encoding="utf-8", newline="") as f:
            if kind == "jsonl":
                for n, line in enumerate(f, 1):
                    if line.strip():
                        yield n, _json_row(path, n, line)
                return
            rows = _reader(f, kind)
            header = next(rows, None)
            if header is None:
                raise DataError(f"{path}: empty file, expected a header line and one row per segment")
            for n, row in enumerate(rows, 1):
                if len(row) != len(header):
                    raise Where(path, unit="row").error(n, f"got {len(row)} fields", f"{len(header)} as in the header")
                yield n, dict(zip(header, row))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason}), expected a UTF-8 {kind.upper()} file") from e
    except csv.Error as e:
        raise DataError(f"{path}: unreadable {kind.upper()} ({e})") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror}") from e


def _json_row(path: Path, n: int, line: str) -> Mapping[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        raise Where(path, unit="row").error(n, f"not JSON ({e.msg})", "one JSON object per line") from e
    if not isinstance(value, dict):
        raise Where(path, unit="row").error(n, f"got {type(value).__name__}", "a JSON object")
    return value


def _parquet_rows(path: Path) -> Iterator[tuple[int, Mapping[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path)
        n = 0
        for batch in table.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                n += 1
                yield n, row
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: cannot read it as Parquet ({e})") from e

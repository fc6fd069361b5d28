"""Line-aligned plain-text inputs of `mtl predict --src F --mt F`: one segment per line in each
file (and, for glass-box features, the NMT tokens, their log-probs and the sentence scores, one
line per segment, as in MLQE-PE's ``word-probas/`` files). Read as a stream; every problem names
the file and the line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from itertools import zip_longest
from pathlib import Path
from typing import BinaryIO

from mtl.data.parse import DataError, Where, score, words

__all__ = ["count_lines", "read_lines"]


def read_lines(files: Mapping[str, str | Path]) -> Iterator[dict]:
    """Segments from line-aligned files.

    Args:
        files: Our field -> its file: ``src`` and ``mt`` (required), and any of ``nmt_tokens``,
            ``nmt_logprobs`` (one per token, then one for <eos>) and ``model_score``.

    Yields:
        Records as `mtl.data.mlqe.MlqeSource.read` gives them (``index`` from 0, ``id`` the line number, labels None).

    Raises:
        DataError: A missing or unreadable file, an empty segment, a malformed number, files of
            different line counts (naming the shorter one).
    """
    paths = {key: Path(p) for key, p in files.items()}
    for path in paths.values():
        if not path.is_file():
            raise DataError(f"{path}: no such file")
    return _stream(paths)


def _stream(paths: Mapping[str, Path]) -> Iterator[dict]:
    with contextlib.ExitStack() as stack:
        handles = {key: stack.enter_context(_open(path)) for key, path in paths.items()}
        for i, raw in enumerate(zip_longest(*handles.values())):
            n = i + 1
            if None in raw:
                short = next(k for k, v in zip(handles, raw) if v is None)
                long = next(k for k, v in zip(handles, raw) if v is not None)
                raise DataError(f"{paths[short]}: {i} lines but {paths[long]} has more, expected one line per "
                                f"segment in every file")
            line = {key: _decode(paths[key], n, value) for key, value in zip(handles, raw)}
            record: dict = {"index": i, "id": str(n), "pair": "input", "lp": None, "pe": None, "da": None,
                            "hter": None, "mt_tags": None, "src_tags": None, "model_score": None,
                            "src": words(Where(paths["src"]), n, line["src"]),
                            "mt": words(Where(paths["mt"]), n, line["mt"])}
            if "model_score" in line:
                record["model_score"] = score(Where(paths["model_score"]), n, line["model_score"], "model_score")
            if "nmt_logprobs" in line:
                where = Where(paths["nmt_logprobs"])
                tokens, values = line.get("nmt_tokens", "").split(), line["nmt_logprobs"].split()
                if len(values) != len(tokens) + 1:
                    raise where.error(n, f"got {len(values)} log-probs for {len(tokens)} NMT tokens in "
                                         f"{paths.get('nmt_tokens')}", f"{len(tokens) + 1} (one per token, then <eos>)")
                record["nmt_tokens"] = tokens
                record["nmt_logprobs"] = [score(where, n, v, "log-prob") for v in values]
            yield record


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"{path}: cannot read it: {e.strerror}") from e


def _decode(path: Path, n: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise Where(path).error(n, f"invalid UTF-8 ({e.reason})", "UTF-8 text") from e


def count_lines(path: str | Path) -> int:
    """Newlines in a file (a last line without one counts too), read in blocks: cheap on large files."""
    n, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")

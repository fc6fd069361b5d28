"""Reader for MLQE-PE (WMT20 QE) in its published tarball layout.

Under a root, ``direct-assessments/<split>/<pair>-<split>.tar.gz`` holds a TSV of direct
assessments and ``post-editing/<split>/<pair>-<split>.tar.gz`` holds one-segment-per-line
``src``/``mt``/``pe``/``hter``/``tags``/``source_tags`` files. Both describe the same
segments line by line, so they are joined by line index (DA text is detokenized, PE text is
tokenized: the strings differ). Members are found by suffix, never by folder, because the
folder inside a tarball differs between splits. Every problem raises :class:`DataError`
naming tarball, member and 1-based line; nothing is dropped.
"""

from __future__ import annotations

import csv
import math
import os
import re
import tarfile
from pathlib import Path

from mtl.errors import MtlError

_DA_DIR = "direct-assessments"
_PE_DIR = "post-editing"
_PAIR = re.compile(r"[a-z]{2}-[a-z]{2}")
_DA_COLUMNS = ("original", "translation", "z_mean", "model_scores")
_PE_SUFFIXES = ("src", "mt", "pe", "hter", "tags", "source_tags")
_PE_REQUIRED = ("src", "mt")
_TAGS = {"OK": 0, "BAD": 1}
_PROBA_PREFIXES = ("mt.", "word_probas.")  # file names in word-probas/ of a DA tarball
_CSV_FIELD_LIMIT = 2**31 - 1  # DA rows hold long lists of scores; the default is 128 KiB


class DataError(MtlError, ValueError):
    """A problem in the MLQE-PE files or in the arguments naming them.

    The message reads ``<tarball>: <member>: line <n>: <what was wrong>, expected <what>``.
    """


def available_pairs(root: str | os.PathLike, split: str) -> list[str]:
    """List the language pairs that have a DA or a PE tarball for ``split``.

    Args:
        root: The MLQE-PE root, holding ``direct-assessments/`` and ``post-editing/``.
        split: ``"train"``, ``"dev"`` or ``"test"``.

    Returns:
        The pairs, e.g. ``["en-de", "et-en"]``, sorted.

    Raises:
        DataError: ``root`` is not a directory or has no folder for ``split``.
    """
    root = Path(root)
    _check_split(root, split)
    suffix = f"-{split}.tar.gz"
    return sorted(
        {
            p.name[: -len(suffix)]
            for folder in (_DA_DIR, _PE_DIR)
            for p in (root / folder / split).glob(f"*{suffix}")
            if _PAIR.fullmatch(p.name[: -len(suffix)])
        }
    )


def read_pair(root: str | os.PathLike, pair: str, split: str, *, word_probas: bool = False) -> list[dict]:
    """Read one pair and split of MLQE-PE, joining DA and PE by line index.

    Args:
        root: The MLQE-PE root, holding ``direct-assessments/`` and ``post-editing/``.
        pair: A language pair such as ``"en-de"``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
        word_probas: Also read the NMT system's tokens and their log-probs (the DA
            tarball's ``word_probas.*`` and ``mt.*`` members, in ``word-probas/``).

    Returns:
        One dict per segment with keys ``pair``, ``index`` (0-based line), ``src`` and ``mt``
        (word lists, from PE when present, else from DA), ``pe`` (words), ``da`` (z_mean),
        ``model_score``, ``hter``, ``mt_tags`` (0 = OK, 1 = BAD, gaps interleaved,
        ``2*len(mt)+1``) and ``src_tags`` (``len(src)``). Labels a split lacks are None.
        With ``word_probas``, also ``nmt_tokens`` (the raw NMT tokens, BPE or SentencePiece
        pieces) and ``nmt_logprobs`` (one per token, then one for ``<eos>``).

    Raises:
        DataError: A malformed pair, a missing split or tarball, any malformed line, or
            (``word_probas``) a missing DA tarball or member.
    """
    root = Path(root)
    da_path, pe_path = check_pair(root, pair, split)
    tsv, da = _read_da(da_path) if da_path.is_file() else ("", None)
    pe_names, pe = _read_pe(pe_path) if pe_path.is_file() else ({}, None)
    if da is not None and pe is not None and len(da) != len(pe["src"]):
        n_da, n_pe = len(da), len(pe["src"])
        raise DataError(
            f"{da_path}: {tsv}: line {min(n_da, n_pe) + 2}: {n_da} segments but "
            f"{pe_path}: {pe_names['src']} has {n_pe} lines, expected the same segments"
        )
    n = len(da) if da is not None else len(pe["src"]) if pe is not None else 0
    if n == 0:
        empty = da_path if da is not None else pe_path
        raise DataError(f"{empty}: no segment in {pair} {split}, expected at least one")
    segments = [_segment(pair, i, da[i] if da is not None else None, pe) for i in range(n)]
    if word_probas:
        if da is None:
            raise DataError(f"{da_path}: no such tarball, expected the direct-assessments tarball holding the "
                            f"NMT log-probs ({', '.join(p + '*' for p in _PROBA_PREFIXES)})")
        tokens, logprobs = _read_word_probas(da_path, tsv, n)
        for segment, toks, lps in zip(segments, tokens, logprobs):
            segment.update(nmt_tokens=toks, nmt_logprobs=lps)
    return segments


def check_pair(root: str | os.PathLike, pair: str, split: str, *, need_da: bool = False) -> tuple[Path, Path]:
    """Check that a pair has a tarball for a split, without reading it.

    Args:
        root: The MLQE-PE root.
        pair: A language pair such as ``"en-de"``.
        split: ``"train"``, ``"dev"`` or ``"test"``.
        need_da: The direct-assessments tarball is needed (DA scores, model_scores, NMT log-probs).

    Returns:
        The paths of its DA and PE tarballs (either may be missing, not both).

    Raises:
        DataError: The root, the split or the pair's tarball is missing (the message lists what is there).
    """
    root = Path(root)
    if not _PAIR.fullmatch(pair):
        raise DataError(f"{root}: pair {pair!r} is not of the form 'xx-yy'; {_present(root)}")
    _check_split(root, split)
    da_path = root / _DA_DIR / split / f"{pair}-{split}.tar.gz"
    pe_path = root / _PE_DIR / split / f"{pair}-{split}.tar.gz"
    if not da_path.is_file() and not pe_path.is_file():
        pairs = ", ".join(available_pairs(root, split)) or "none"
        raise DataError(f"no tarball for {pair} {split}: looked for {da_path} and {pe_path}; "
                        f"pairs with a {split} split: {pairs}")
    if need_da and not da_path.is_file():
        raise DataError(f"{da_path}: no such tarball, expected the direct-assessments tarball of {pair} {split}")
    return da_path, pe_path


def _segment(pair: str, i: int, da: dict | None, pe: dict[str, list] | None) -> dict:
    def pe_field(suffix: str) -> object:
        return pe[suffix][i] if pe is not None and suffix in pe else None

    return {
        "pair": pair,
        "index": i,
        "src": pe["src"][i] if pe is not None else (da or {})["src"],
        "mt": pe["mt"][i] if pe is not None else (da or {})["mt"],
        "pe": pe_field("pe"),
        "da": da["da"] if da is not None else None,
        "model_score": da["model_score"] if da is not None else None,
        "hter": pe_field("hter"),
        "mt_tags": pe_field("tags"),
        "src_tags": pe_field("source_tags"),
    }


def _read_da(path: Path) -> tuple[str, list[dict]]:
    """Return the TSV member's name and one dict (src, mt, da, model_score) per row."""
    name, text = _require(path, _read_members(path, ("tsv",)), "tsv")
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    rows = csv.reader(_lines(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, [])
    missing = [c for c in _DA_COLUMNS if c not in header]
    if missing:
        what, expected = f"header lacks {', '.join(missing)}", f"columns {' '.join(_DA_COLUMNS)}"
        raise _error(path, name, 1, what, expected)
    col = {c: header.index(c) for c in _DA_COLUMNS}
    out = []
    try:
        for row in rows:
            line = rows.line_num
            if len(row) != len(header):
                what, expected = f"got {len(row)} columns", f"{len(header)} as in the header"
                raise _error(path, name, line, what, expected)
            out.append({
                "src": _words(path, name, line, row[col["original"]]),
                "mt": _words(path, name, line, row[col["translation"]]),
                "da": _score(path, name, line, row[col["z_mean"]], "z_mean"),
                "model_score": _score(path, name, line, row[col["model_scores"]], "model_scores"),
            })
    except csv.Error as e:
        raise _error(path, name, rows.line_num, f"unreadable row ({e})", "tab-separated fields") from e
    return name, out


def _read_pe(path: Path) -> tuple[dict[str, str], dict[str, list]]:
    """Return member names by suffix and the parsed lines by suffix."""
    members = _read_members(path, _PE_SUFFIXES)
    for suffix in _PE_REQUIRED:
        _require(path, members, suffix)
    names = {s: name for s, (name, _) in members.items()}
    lines = {s: _lines(text) for s, (_, text) in members.items()}
    n = len(lines["src"])
    for s, ls in lines.items():
        if len(ls) != n:
            what = f"{len(ls)} lines but {names['src']} has {n}"
            raise _error(path, names[s], min(len(ls), n) + 1, what, "the same line count in every member")

    def at(suffix: str, i: int) -> tuple[Path, str, int, str]:
        return path, names[suffix], i + 1, lines[suffix][i]

    out: dict[str, list] = {s: [] for s in lines}
    for i in range(n):
        src, mt = _words(*at("src", i)), _words(*at("mt", i))
        out["src"].append(src)
        out["mt"].append(mt)
        if "pe" in lines:
            out["pe"].append(lines["pe"][i].split())
        if "hter" in lines:
            out["hter"].append(_score(*at("hter", i), "hter"))
        if "tags" in lines:
            mt_words = f"{len(mt)} MT words"
            out["tags"].append(_tags(*at("tags", i), mt_words, 2 * len(mt) + 1, "2*words+1"))
        if "source_tags" in lines:
            src_words = f"{len(src)} source words"
            out["source_tags"].append(_tags(*at("source_tags", i), src_words, len(src), "one per word"))
    return names, out


def _read_word_probas(path: Path, tsv: str, n: int) -> tuple[list[list[str]], list[list[float]]]:
    """The NMT tokens and their log-probs (tokens + 1 for <eos>) of each of ``n`` segments."""
    members = _read_prefixed(path, _PROBA_PREFIXES)
    for prefix in _PROBA_PREFIXES:
        if prefix not in members:
            raise DataError(f"{path}: {prefix}*: no such member, expected one whose file name starts with "
                            f"'{prefix}' (the NMT system's tokens and log-probs, in word-probas/)")
    (mt_name, mt_text), (lp_name, lp_text) = members["mt."], members["word_probas."]
    token_lines, lp_lines = _lines(mt_text), _lines(lp_text)
    for name, lines in ((mt_name, token_lines), (lp_name, lp_lines)):
        if len(lines) != n:
            what = f"{len(lines)} lines but {tsv} has {n} segments"
            raise _error(path, name, min(len(lines), n) + 1, what, "one line per segment")
    tokens, logprobs = [], []
    for i, (token_line, lp_line) in enumerate(zip(token_lines, lp_lines)):
        toks, values = token_line.split(), lp_line.split()
        if len(values) != len(toks) + 1:
            what = f"got {len(values)} log-probs for {len(toks)} NMT tokens in {mt_name}"
            raise _error(path, lp_name, i + 1, what, f"{len(toks) + 1} (one per token, then <eos>)")
        tokens.append(toks)
        logprobs.append([_score(path, lp_name, i + 1, v, "log-prob") for v in values])
    return tokens, logprobs


def _read_prefixed(path: Path, prefixes: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Return ``prefix -> (member name, utf-8 text)`` for members whose file name starts with
    a prefix (the word-probas members share their suffix, e.g. ``.roen``)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            found: dict[str, tarfile.TarInfo] = {}
            for info in tar.getmembers():
                base = info.name.rsplit("/", 1)[-1]
                prefix = next((p for p in prefixes if base.startswith(p)), None)
                if not info.isfile() or prefix is None:
                    continue
                if prefix in found:
                    raise DataError(f"{path}: {found[prefix].name}, {info.name}: both start with '{prefix}', "
                                    "expected exactly one such member")
                found[prefix] = info
            return {p: (m.name, _decode(path, m.name, _member(tar, m))) for p, m in found.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e}), expected a gzip-compressed tar archive") from e


def _read_members(path: Path, suffixes: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """Return ``suffix -> (member name, utf-8 text)`` for the wanted suffixes, in memory."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            found: dict[str, tarfile.TarInfo] = {}
            for info in tar.getmembers():
                _, dot, suffix = info.name.rsplit("/", 1)[-1].rpartition(".")
                if not info.isfile() or not dot or suffix not in suffixes:
                    continue
                if suffix in found:
                    raise DataError(
                        f"{path}: {found[suffix].name}, {info.name}: both end in '.{suffix}', "
                        "expected exactly one such member"
                    )
                found[suffix] = info
            return {s: (m.name, _decode(path, m.name, _member(tar, m))) for s, m in found.items()}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e}), expected a gzip-compressed tar archive") from e


def _member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    f = tar.extractfile(info)
    if f is None:  # pragma: no cover - only regular files are passed in
        raise tarfile.TarError(f"{info.name} is not a regular file")
    return f.read()


def _require(path: Path, members: dict[str, tuple[str, str]], suffix: str) -> tuple[str, str]:
    if suffix not in members:
        raise DataError(f"{path}: *.{suffix}: no such member, expected one whose name ends in '.{suffix}'")
    return members[suffix]


def _decode(path: Path, member: str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise _error(path, member, line, f"invalid UTF-8 ({e.reason})", "UTF-8 text") from e


def _lines(text: str) -> list[str]:
    """Split on newlines only (the data holds other Unicode line separators), final one optional."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _words(path: Path, member: str, line: int, text: str) -> list[str]:
    words = text.split()
    if not words:
        raise _error(path, member, line, "empty segment", "at least one word")
    return words


def _score(path: Path, member: str, line: int, text: str, label: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise _error(path, member, line, f"{label} {text!r} is not a number", "a finite float") from e
    if not math.isfinite(value):
        raise _error(path, member, line, f"{label} {text!r} is not finite", "a finite float")
    return value


def _tags(
    path: Path, member: str, line: int, text: str, words: str, expected: int, rule: str
) -> list[int]:
    """Parse OK/BAD tags; ``words`` says what they tag (``"3 MT words"``), ``rule`` how many."""
    tags = text.split()
    bad = next((t for t in tags if t not in _TAGS), None)
    if bad is not None:
        raise _error(path, member, line, f"tag {bad!r}", "OK or BAD")
    if len(tags) != expected:
        raise _error(path, member, line, f"got {len(tags)} tags for {words}", f"{expected} ({rule})")
    return [_TAGS[t] for t in tags]


def _check_split(root: Path, split: str) -> None:
    if not root.is_dir():
        raise DataError(f"{root}: not a directory, expected the MLQE-PE root ({_DA_DIR}/, {_PE_DIR}/)")
    if not (root / _DA_DIR / split).is_dir() and not (root / _PE_DIR / split).is_dir():
        looked = f"looked for {_DA_DIR}/{split} and {_PE_DIR}/{split}"
        raise DataError(f"{root}: no split {split!r} ({looked}); {_present(root)}")


def _present(root: Path) -> str:
    found = [p for folder in (_DA_DIR, _PE_DIR) for p in (root / folder).glob("*/*.tar.gz")]
    tarballs = sorted(p.relative_to(root).as_posix() for p in found)
    return f"tarballs present: {', '.join(tarballs) or 'none'}"


def _error(path: Path, member: str, line: int, what: str, expected: str) -> DataError:
    return DataError(f"{path}: {member}: line {line}: {what}, expected {expected}")

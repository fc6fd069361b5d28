"""Reader for MLQE-PE (WMT20 QE) in its published layout, and for releases that keep its files.

Under a root, ``direct-assessments/<split>/<pair>-<split>.tar.gz`` holds a TSV of direct
assessments and ``post-editing/<split>/<pair>-<split>.tar.gz`` holds one-segment-per-line
``src``/``mt``/``pe``/``hter``/``tags``/``source_tags`` files; either may also be the same folder
extracted (``<pair>-<split>/``). Both describe the same segments line by line, so they are joined
by line index (DA text is detokenized, PE text is tokenized: the strings differ). A release that
renames folders, TSV columns or file suffixes (WMT21 reused this layout; later ones rename) is
read with :class:`MlqeSource`'s options, not another code path. Every problem raises
:class:`DataError` naming tarball, member and 1-based line; nothing is dropped.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mtl.config_loader import Problem
from mtl.config_loader import check as check_problems
from mtl.data import members
from mtl.data.parse import DataError, Where, lines, score, tags, words

__all__ = ["DataError", "MlqeSource", "available_pairs", "check_pair", "read_pair"]

_PAIR = re.compile(r"[a-z]{2,3}-[a-z]{2,3}")
_CSV_FIELD_LIMIT = 2**31 - 1  # DA rows hold long lists of scores; the default is 128 KiB
DA_COLUMNS = {"src": "original", "mt": "translation", "da": "z_mean", "model_score": "model_scores"}
PE_SUFFIXES = {"src": "src", "mt": "mt", "pe": "pe", "hter": "hter", "tags": "tags", "source_tags": "source_tags"}
PROBA_PREFIXES = {"tokens": "mt.", "logprobs": "word_probas."}  # file names in word-probas/ of a DA bundle


@dataclass(frozen=True)
class MlqeSource:
    """A release in MLQE-PE's layout: the published MLQE-PE (WMT20), WMT21's, or one that renames
    its folders, TSV columns or file suffixes (each option maps our name to the release's)."""

    source: Literal["mlqe"] = "mlqe"
    """Which reader (a row of `mtl.data.sources.SOURCES`)."""
    root: str = ""
    """The release's root (the folder holding the DA and PE folders)."""
    pair: str | None = None
    """The language pair in its file names (default: the dataset's name)."""
    da_folder: str = "direct-assessments"
    """Folder of the sentence-score bundles."""
    pe_folder: str = "post-editing"
    """Folder of the post-editing bundles (one file per field)."""
    da_columns: dict[str, str] = field(default_factory=dict)
    """Our field -> the TSV's column, for those named otherwise: src (original), mt (translation),
    da (z_mean), model_score (model_scores)."""
    pe_suffixes: dict[str, str] = field(default_factory=dict)
    """Our field -> the file suffix, for those named otherwise: src, mt, pe, hter, tags, source_tags."""

    def __post_init__(self) -> None:
        problems = []
        if not self.root:
            problems.append(Problem("root", "must name the release's folder"))
        for key, known in (("da_columns", DA_COLUMNS), ("pe_suffixes", PE_SUFFIXES)):
            problems += [Problem(f"{key}.{k}", f"unknown field {k!r}", f"valid: {', '.join(known)}")
                         for k in getattr(self, key) if k not in known]
        check_problems(problems)

    def bundle(self, folder: str, name: str, split: str) -> Path:
        """The tarball path of a pair's split in ``folder`` (`da_folder` or `pe_folder`; its
        extracted folder: the same without ``.tar.gz``)."""
        return Path(self.root) / folder / split / f"{self.pair or name}-{split}.tar.gz"

    def columns(self) -> dict[str, str]:
        return {**DA_COLUMNS, **self.da_columns}

    def suffixes(self) -> dict[str, str]:
        return {**PE_SUFFIXES, **self.pe_suffixes}


    def resolved(self) -> MlqeSource:
        """The same source with its root an absolute path (for a process in another folder)."""
        return dataclasses.replace(self, root=str(Path(self.root).resolve()))

    def with_root(self, root: str) -> MlqeSource:
        """The same release read from another root (``--data``)."""
        return dataclasses.replace(self, root=root)

    def read(self, name: str, split: str, *, word_probas: bool = False) -> list[dict]:
        """Read one pair and split of a release, joining DA and PE by line index.

        Args:
            name: The dataset's name (the pair, unless ``self.pair`` names it).
            split: ``"train"``, ``"dev"`` or ``"test"``.
            word_probas: Also read the NMT system's tokens and their log-probs (the DA bundle's
                ``word_probas.*`` and ``mt.*`` files, in ``word-probas/``).

        Returns:
            One dict per segment with keys ``pair`` (the dataset's name), ``lp`` (the language pair),
            ``index`` (0-based line), ``src`` and ``mt``
            (word lists, from PE when present, else from DA), ``pe`` (words), ``da`` (z_mean),
            ``model_score``, ``hter``, ``mt_tags`` (0 = OK, 1 = BAD, gaps interleaved,
            ``2*len(mt)+1``) and ``src_tags`` (``len(src)``). Labels a split lacks are None.
            With ``word_probas``, also ``nmt_tokens`` (the raw NMT tokens, BPE or SentencePiece
            pieces) and ``nmt_logprobs`` (one per token, then one for ``<eos>``).

        Raises:
            DataError: A malformed pair, a missing split or bundle, any malformed line, or
                (``word_probas``) a missing DA bundle or file.
        """
        da_path, pe_path = self.check(name, split)
        tsv, da = _read_da(self, da_path) if members.exists(da_path) else ("", None)
        pe_names, pe = _read_pe(self, pe_path) if members.exists(pe_path) else ({}, None)
        if da is not None and pe is not None and len(da) != len(pe["src"]):
            n_da, n_pe = len(da), len(pe["src"])
            raise DataError(f"{da_path}: {tsv}: line {min(n_da, n_pe) + 2}: {n_da} segments but {pe_path}: "
                            f"{pe_names['src']} has {n_pe} lines, expected the same segments")
        n = len(da) if da is not None else len(pe["src"]) if pe is not None else 0
        if n == 0:
            empty = da_path if da is not None else pe_path
            raise DataError(f"{empty}: no segment in {name} {split}, expected at least one")
        segments = [_segment(name, self.pair or name, i, da[i] if da is not None else None, pe) for i in range(n)]
        if word_probas:
            if da is None:
                raise DataError(f"{da_path}: no such tarball, expected the direct-assessments tarball holding the "
                                f"NMT log-probs ({', '.join(p + '*' for p in PROBA_PREFIXES.values())})")
            tokens, logprobs = _read_word_probas(da_path, tsv, n)
            for segment, toks, lps in zip(segments, tokens, logprobs):
                segment.update(nmt_tokens=toks, nmt_logprobs=lps)
        return segments

    def check(self, name: str, split: str, *, need_da: bool = False) -> tuple[Path, Path]:
        """Check that a pair has a bundle for a split, without reading it.

        Args:
            name: The dataset's name (the pair, unless ``self.pair`` names it).
            split: ``"train"``, ``"dev"`` or ``"test"``.
            need_da: The direct-assessments bundle is needed (DA scores, model_scores, NMT log-probs).

        Returns:
            The paths of its DA and PE tarballs (either may be missing or extracted, not both).

        Raises:
            DataError: The root, the split or the pair's bundle is missing (the message lists what is there).
        """
        pair = self.pair or name
        if not _PAIR.fullmatch(pair):
            raise DataError(f"{self.root}: pair {pair!r} is not of the form 'xx-yy'; {_present(self)}")
        _check_split(self, split)
        da_path, pe_path = self.bundle(self.da_folder, name, split), self.bundle(self.pe_folder, name, split)
        if not members.exists(da_path) and not members.exists(pe_path):
            pairs = ", ".join(available_pairs(self.root, split, source=self)) or "none"
            raise DataError(f"no tarball for {pair} {split}: looked for {da_path} and {pe_path}; pairs with a {split} "
                            f"split: {pairs} (a tarball may also be its folder, extracted)")
        if need_da and not members.exists(da_path):
            raise DataError(f"{da_path}: no such tarball, expected the direct-assessments tarball of {pair} {split}")
        return da_path, pe_path

    def identity(self, name: str, split: str) -> str:
        """What changes when the files change (the cache key of the tokenized split)."""
        parts = []
        for folder in (self.da_folder, self.pe_folder):
            path = self.bundle(folder, name, split)
            for p in (path, path.with_name(path.name.removesuffix(".tar.gz"))):
                if p.is_file():
                    stat = p.stat()
                    parts.append(f"{p.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
                elif p.is_dir():
                    parts += [f"{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
                              for f in sorted(p.rglob("*")) if f.is_file()]
        layout = f"{self.da_folder}|{self.pe_folder}|{sorted(self.columns().items())}|{sorted(self.suffixes().items())}"
        return "\n".join([*parts, layout])


def available_pairs(root: str | os.PathLike, split: str, *, source: MlqeSource | None = None) -> list[str]:
    """The language pairs that have a DA or a PE bundle for ``split``, sorted.

    Raises:
        DataError: ``root`` is not a directory or has no folder for ``split``.
    """
    spec = source or MlqeSource(root=str(root))
    _check_split(spec, split)
    found = set()
    for folder in (spec.da_folder, spec.pe_folder):
        for p in (Path(spec.root) / folder / split).glob(f"*-{split}*"):
            name = p.name.removesuffix(".tar.gz").removesuffix(f"-{split}")
            if _PAIR.fullmatch(name) and (p.is_dir() or p.name.endswith(".tar.gz")):
                found.add(name)
    return sorted(found)


def read_pair(root: str | os.PathLike, pair: str, split: str, *, word_probas: bool = False) -> list[dict]:
    """Read one pair and split of MLQE-PE as published (see :meth:`MlqeSource.read`)."""
    return MlqeSource(root=str(root)).read(pair, split, word_probas=word_probas)


def check_pair(root: str | os.PathLike, pair: str, split: str, *, need_da: bool = False) -> tuple[Path, Path]:
    """:meth:`MlqeSource.check` for a pair of MLQE-PE as published under ``root``."""
    return MlqeSource(root=str(root)).check(pair, split, need_da=need_da)


def _segment(pair: str, lp: str, i: int, da: dict | None, pe: dict[str, list] | None) -> dict:
    def pe_field(key: str) -> object:
        return pe[key][i] if pe is not None and key in pe else None

    return {
        "pair": pair,
        "index": i,
        "lp": lp,
        "src": pe["src"][i] if pe is not None else (da or {})["src"],
        "mt": pe["mt"][i] if pe is not None else (da or {})["mt"],
        "pe": pe_field("pe"),
        "da": da["da"] if da is not None else None,
        "model_score": da["model_score"] if da is not None else None,
        "hter": pe_field("hter"),
        "mt_tags": pe_field("tags"),
        "src_tags": pe_field("source_tags"),
    }


def _read_da(spec: MlqeSource, path: Path) -> tuple[str, list[dict]]:
    """Return the TSV member's name and one dict (src, mt, da, model_score) per row."""
    name, text = _require(path, members.by_suffix(path, ("tsv",)), "tsv")
    csv.field_size_limit(max(csv.field_size_limit(), _CSV_FIELD_LIMIT))
    rows = csv.reader(lines(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(rows, [])
    columns = spec.columns()
    where = Where(path, name)
    missing = [c for c in columns.values() if c not in header]
    if missing:
        raise where.error(1, f"header lacks {', '.join(missing)}", f"columns {' '.join(columns.values())}")
    col = {field_: header.index(c) for field_, c in columns.items()}
    out = []
    try:
        for row in rows:
            n = rows.line_num
            if len(row) != len(header):
                raise where.error(n, f"got {len(row)} columns", f"{len(header)} as in the header")
            out.append({"src": words(where, n, row[col["src"]]), "mt": words(where, n, row[col["mt"]]),
                        "da": score(where, n, row[col["da"]], columns["da"]),
                        "model_score": score(where, n, row[col["model_score"]], columns["model_score"])})
    except csv.Error as e:
        raise where.error(rows.line_num, f"unreadable row ({e})", "tab-separated fields") from e
    return name, out


def _read_pe(spec: MlqeSource, path: Path) -> tuple[dict[str, str], dict[str, list]]:
    """Return file names by field and the parsed lines by field."""
    suffixes = spec.suffixes()
    found = members.by_suffix(path, tuple(suffixes.values()))
    by_field = {f: found[s] for f, s in suffixes.items() if s in found}
    for key in ("src", "mt"):
        if key not in by_field:
            _require(path, {}, suffixes[key])
    names = {f: name for f, (name, _) in by_field.items()}
    texts = {f: lines(text) for f, (_, text) in by_field.items()}
    n = len(texts["src"])
    for f, ls in texts.items():
        if len(ls) != n:
            raise Where(path, names[f]).error(min(len(ls), n) + 1, f"{len(ls)} lines but {names['src']} has {n}",
                                              "the same line count in every member")
    out: dict[str, list] = {f: [] for f in texts}

    def at(key: str, i: int) -> tuple[Where, int, str]:
        return Where(path, names[key]), i + 1, texts[key][i]

    for i in range(n):
        src, mt = words(*at("src", i)), words(*at("mt", i))
        out["src"].append(src)
        out["mt"].append(mt)
        if "pe" in texts:
            out["pe"].append(texts["pe"][i].split())
        if "hter" in texts:
            out["hter"].append(score(*at("hter", i), "hter"))
        if "tags" in texts:
            out["tags"].append(tags(*at("tags", i), f"{len(mt)} MT words", [2 * len(mt) + 1], "2*words+1"))
        if "source_tags" in texts:
            out["source_tags"].append(tags(*at("source_tags", i), f"{len(src)} source words", [len(src)],
                                           "one per word"))
    return names, out


def _read_word_probas(path: Path, tsv: str, n: int) -> tuple[list[list[str]], list[list[float]]]:
    """The NMT tokens and their log-probs (tokens + 1 for <eos>) of each of ``n`` segments."""
    found = members.by_prefix(path, tuple(PROBA_PREFIXES.values()))
    for prefix in PROBA_PREFIXES.values():
        if prefix not in found:
            raise DataError(f"{path}: {prefix}*: no such member, expected one whose file name starts with "
                            f"'{prefix}' (the NMT system's tokens and log-probs, in word-probas/)")
    (mt_name, mt_text), (lp_name, lp_text) = found[PROBA_PREFIXES["tokens"]], found[PROBA_PREFIXES["logprobs"]]
    token_lines, lp_lines = lines(mt_text), lines(lp_text)
    for name, ls in ((mt_name, token_lines), (lp_name, lp_lines)):
        if len(ls) != n:
            raise Where(path, name).error(min(len(ls), n) + 1, f"{len(ls)} lines but {tsv} has {n} segments",
                                          "one line per segment")
    tokens, logprobs = [], []
    where = Where(path, lp_name)
    for i, (token_line, lp_line) in enumerate(zip(token_lines, lp_lines)):
        toks, values = token_line.split(), lp_line.split()
        if len(values) != len(toks) + 1:
            raise where.error(i + 1, f"got {len(values)} log-probs for {len(toks)} NMT tokens in {mt_name}",
                              f"{len(toks) + 1} (one per token, then <eos>)")
        tokens.append(toks)
        logprobs.append([score(where, i + 1, v, "log-prob") for v in values])
    return tokens, logprobs


def _require(path: Path, found: dict[str, tuple[str, str]], suffix: str) -> tuple[str, str]:
    if suffix not in found:
        raise DataError(f"{path}: *.{suffix}: no such member, expected one whose name ends in '.{suffix}'")
    return found[suffix]


def _check_split(spec: MlqeSource, split: str) -> None:
    root = Path(spec.root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory, expected the MLQE-PE root ({spec.da_folder}/, {spec.pe_folder}/)")
    if not (root / spec.da_folder / split).is_dir() and not (root / spec.pe_folder / split).is_dir():
        looked = f"looked for {spec.da_folder}/{split} and {spec.pe_folder}/{split}"
        raise DataError(f"{root}: no split {split!r} ({looked}); {_present(spec)}")


def _present(spec: MlqeSource) -> str:
    root = Path(spec.root)
    found = [p for folder in (spec.da_folder, spec.pe_folder) for p in (root / folder).glob("*/*.tar.gz")]
    tarballs = sorted(p.relative_to(root).as_posix() for p in found)
    return f"tarballs present: {', '.join(tarballs) or 'none'}"

"""Synthetic MLQE-PE tarballs in the published layout, for the reader's and the trainer's tests."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

HEADER = "index\toriginal\ttranslation\tscores\tmean\tz_scores\tz_mean\tmodel_scores\n"
TSV = "aa-bb-dev/dev.aabb.df.short.tsv"
DA = {
    TSV: HEADER
    + '0\tSay "hi, then.\tA B\t[1, 2]\t1.5\t[0.1, 0.2]\t0.15\t-0.2\n'  # lone quote: QUOTE_NONE
    + "1\td e\tD E F\t[3, 4]\t3.5\t[0.3, 0.4]\t0.35\t-0.4\n",
    "aa-bb-dev/dev.doc_ids": "doc1\ndoc1\n",
    "aa-bb-dev/word-probas/mt.dev.aabb": "ignored\n",
}
PE = {
    "aa-bb-dev/dev.src": "Say \" hi , then .\nd e\n",
    "aa-bb-dev/dev.mt": "A B\nD E F\n",
    "aa-bb-dev/dev.pe": "A B C\nD E\n",
    "aa-bb-dev/dev.hter": "0.500000\n0.000000\n",
    "aa-bb-dev/dev.tags": "OK BAD OK OK OK\nOK OK OK OK OK OK BAD\n",
    "aa-bb-dev/dev.source_tags": "OK OK BAD OK OK OK\nOK OK\n",
    "aa-bb-dev/dev.src-mt.alignments": "0-0\n0-0\n",
}


def write_tar(path: Path, members: dict[str, str]) -> None:
    """Write a .tar.gz at ``path`` holding ``members`` (member name -> utf-8 text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def make_root(
    tmp_path: Path, *, da: dict[str, str] | None = DA, pe: dict[str, str] | None = PE, pair: str = "aa-bb"
) -> Path:
    """Lay out a synthetic MLQE-PE root with a dev split for ``pair``; None leaves a half out."""
    root = tmp_path / "mlqe-pe"
    for folder, members in (("direct-assessments", da), ("post-editing", pe)):
        (root / folder / "dev").mkdir(parents=True, exist_ok=True)
        if members is not None:
            write_tar(root / folder / "dev" / f"{pair}-dev.tar.gz", members)
    return root


def changed(members: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """Return ``members`` with ``changes`` applied; a None value removes the member."""
    out = {**members, **changes}
    return {name: text for name, text in out.items() if text is not None}

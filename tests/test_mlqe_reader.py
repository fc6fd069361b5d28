"""Tests for the MLQE-PE reader: the real data, then small synthetic tarballs per error."""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import pytest

from mtl.data.mlqe import DataError, available_pairs, read_pair

KEYS = {"pair", "index", "src", "mt", "pe", "da", "model_score", "hter", "mt_tags", "src_tags"}
PAIRS = ["en-de", "et-en", "ro-en", "si-en"]

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


def _mlqe_root() -> Path:
    """The shared real MLQE-PE root; skips the test when the data is not there."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlqe-pe"
    if not root.is_dir():
        pytest.skip(f"real MLQE-PE data not found at {root}")
    return root


def _write_tar(path: Path, members: dict[str, str]) -> None:
    """Write a .tar.gz at ``path`` holding ``members`` (member name -> utf-8 text)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _make_root(
    tmp_path: Path, *, da: dict[str, str] | None = DA, pe: dict[str, str] | None = PE, pair: str = "aa-bb"
) -> Path:
    """Lay out a synthetic MLQE-PE root with a dev split for ``pair``; None leaves a half out."""
    root = tmp_path / "mlqe-pe"
    for folder, members in (("direct-assessments", da), ("post-editing", pe)):
        (root / folder / "dev").mkdir(parents=True, exist_ok=True)
        if members is not None:
            _write_tar(root / folder / "dev" / f"{pair}-dev.tar.gz", members)
    return root


def _changed(members: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    """Return ``members`` with ``changes`` applied; a None value removes the member."""
    out = {**members, **changes}
    return {name: text for name, text in out.items() if text is not None}


def test_real_en_de_dev() -> None:
    rows = read_pair(_mlqe_root(), "en-de", "dev")
    assert len(rows) == 1000
    assert rows[0]["src"][0] == "Simultaneously"
    for i, row in enumerate(rows):
        assert set(row) == KEYS
        assert row["pair"] == "en-de" and row["index"] == i
        assert len(row["mt_tags"]) == 2 * len(row["mt"]) + 1
        assert len(row["src_tags"]) == len(row["src"])
        assert set(row["mt_tags"]) | set(row["src_tags"]) <= {0, 1}
        assert isinstance(row["hter"], float) and 0.0 <= row["hter"] <= 1.0
        assert isinstance(row["da"], float) and isinstance(row["model_score"], float)
        assert row["pe"]


@pytest.mark.parametrize("split, count", [("train", 7000), ("dev", 1000)])
def test_real_all_pairs_load(split: str, count: int) -> None:
    root = _mlqe_root()
    assert available_pairs(root, split) == PAIRS
    for pair in PAIRS:
        rows = read_pair(root, pair, split)
        assert len(rows) == count, pair
        assert all(r["da"] is not None and r["mt_tags"] is not None for r in rows), pair


def test_synthetic_joins_da_and_pe_by_line(tmp_path: Path) -> None:
    rows = read_pair(_make_root(tmp_path), "aa-bb", "dev")
    assert rows[0] == {
        "pair": "aa-bb",
        "index": 0,
        "src": ["Say", '"', "hi", ",", "then", "."],  # tokenized PE text, not DA's
        "mt": ["A", "B"],
        "pe": ["A", "B", "C"],
        "da": 0.15,
        "model_score": -0.2,
        "hter": 0.5,
        "mt_tags": [0, 1, 0, 0, 0],
        "src_tags": [0, 0, 1, 0, 0, 0],
    }
    assert rows[1]["index"] == 1 and rows[1]["mt_tags"][-1] == 1 and rows[1]["da"] == 0.35


def test_members_found_in_any_folder(tmp_path: Path) -> None:
    da = {name.replace("aa-bb-dev/", "blind/nested/"): text for name, text in DA.items()}
    pe = {name.replace("aa-bb-dev/", "aa-bb-test-v2/"): text for name, text in PE.items()}
    rows = read_pair(_make_root(tmp_path, da=da, pe=pe), "aa-bb", "dev")
    assert [r["da"] for r in rows] == [0.15, 0.35]
    assert [r["hter"] for r in rows] == [0.5, 0.0]


def test_pe_only_pair_has_no_da(tmp_path: Path) -> None:
    rows = read_pair(_make_root(tmp_path, da=None), "aa-bb", "dev")
    assert len(rows) == 2
    assert all(r["da"] is None and r["model_score"] is None for r in rows)
    assert rows[1]["mt_tags"] is not None and rows[1]["mt"] == ["D", "E", "F"]


def test_da_only_pair_takes_text_from_da(tmp_path: Path) -> None:
    rows = read_pair(_make_root(tmp_path, pe=None), "aa-bb", "dev")
    assert rows[0]["src"] == ["Say", '"hi,', "then."]
    assert rows[1]["mt"] == ["D", "E", "F"]
    for key in ("pe", "hter", "mt_tags", "src_tags"):
        assert all(r[key] is None for r in rows), key


def test_optional_pe_members_missing_give_none(tmp_path: Path) -> None:
    pe = _changed(PE, {"aa-bb-dev/dev.pe": None, "aa-bb-dev/dev.hter": None, "aa-bb-dev/dev.tags": None})
    rows = read_pair(_make_root(tmp_path, pe=pe), "aa-bb", "dev")
    assert all(r["pe"] is None and r["hter"] is None and r["mt_tags"] is None for r in rows)
    assert rows[0]["src_tags"] == [0, 0, 1, 0, 0, 0]


DA_TB = "direct-assessments/dev/aa-bb-dev.tar.gz"
PE_TB = "post-editing/dev/aa-bb-dev.tar.gz"
LINE_ERRORS = [
    pytest.param(
        {}, {"aa-bb-dev/dev.tags": "OK BAD OK OK OK\nOK OK OK OK OK\n"},
        PE_TB, "aa-bb-dev/dev.tags", 2, "got 5 tags for 3 MT words, expected 7 (2*words+1)",
        id="mt-tag-count",
    ),
    pytest.param(
        {}, {"aa-bb-dev/dev.source_tags": "OK OK BAD OK OK OK\nOK\n"},
        PE_TB, "aa-bb-dev/dev.source_tags", 2, "got 1 tags for 2 source words, expected 2 (one per word)",
        id="src-tag-count",
    ),
    pytest.param(
        {}, {"aa-bb-dev/dev.tags": "OK BAD OK GOOD OK\nOK OK OK OK OK OK BAD\n"},
        PE_TB, "aa-bb-dev/dev.tags", 1, "tag 'GOOD', expected OK or BAD",
        id="bad-tag",
    ),
    pytest.param(
        {TSV: DA[TSV].replace("\t0.35\t", "\thigh\t")}, {},
        DA_TB, TSV, 3, "z_mean 'high' is not a number, expected a finite float",
        id="non-numeric-z-mean",
    ),
    pytest.param(
        {TSV: DA[TSV].replace("\t-0.2\n", "\tnan\n")}, {},
        DA_TB, TSV, 2, "model_scores 'nan' is not finite, expected a finite float",
        id="nan-model-score",
    ),
    pytest.param(
        {}, {"aa-bb-dev/dev.hter": "0.5\ninf\n"},
        PE_TB, "aa-bb-dev/dev.hter", 2, "hter 'inf' is not finite, expected a finite float",
        id="inf-hter",
    ),
    pytest.param(
        {TSV: DA[TSV].replace("\td e\t", "\td\te\t")}, {},
        DA_TB, TSV, 3, "got 9 columns, expected 8 as in the header",
        id="ragged-row",
    ),
    pytest.param(
        {}, {"aa-bb-dev/dev.pe": "A B C\n"},
        PE_TB, "aa-bb-dev/dev.pe", 2, "1 lines but aa-bb-dev/dev.src has 2",
        id="pe-member-line-counts",
    ),
    pytest.param(
        {}, {"aa-bb-dev/dev.mt": "A B\n \n"},
        PE_TB, "aa-bb-dev/dev.mt", 2, "empty segment, expected at least one word",
        id="empty-mt",
    ),
    pytest.param(
        {TSV: HEADER.replace("z_mean", "zmean") + "0\ta\tb\t[]\t0\t[]\t0\t0\n"}, {},
        DA_TB, TSV, 1, "header lacks z_mean",
        id="missing-column",
    ),
]


@pytest.mark.parametrize("da_changes, pe_changes, tarball, member, line, what", LINE_ERRORS)
def test_line_errors_name_tarball_member_and_line(
    tmp_path: Path, da_changes: dict, pe_changes: dict, tarball: str, member: str, line: int, what: str
) -> None:
    root = _make_root(tmp_path, da=_changed(DA, da_changes), pe=_changed(PE, pe_changes))
    expected = f"{root / tarball}: {member}: line {line}: {what}"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_missing_required_member(tmp_path: Path) -> None:
    root = _make_root(tmp_path, pe=_changed(PE, {"aa-bb-dev/dev.mt": None}))
    with pytest.raises(DataError, match=re.escape(f"{root / PE_TB}: *.mt: no such member")):
        read_pair(root, "aa-bb", "dev")


def test_duplicate_suffix_members_name_both(tmp_path: Path) -> None:
    root = _make_root(tmp_path, pe={**PE, "old/dev.src": PE["aa-bb-dev/dev.src"]})
    expected = f"{root / PE_TB}: aa-bb-dev/dev.src, old/dev.src: both end in '.src'"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_da_pe_line_count_mismatch_names_both(tmp_path: Path) -> None:
    da = _changed(DA, {TSV: DA[TSV] + "2\tf\tF\t[5]\t5\t[0.5]\t0.5\t0.1\n"})
    root = _make_root(tmp_path, da=da)
    expected = f"{root / DA_TB}: {TSV}: line 4: 3 segments but {root / PE_TB}: aa-bb-dev/dev.src has 2 lines"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_unknown_pair_lists_available(tmp_path: Path) -> None:
    root = _make_root(tmp_path)
    _write_tar(root / "post-editing" / "dev" / "cc-dd-dev.tar.gz", PE)
    assert available_pairs(root, "dev") == ["aa-bb", "cc-dd"]
    da, pe = root / "direct-assessments/dev/fr-en-dev.tar.gz", root / "post-editing/dev/fr-en-dev.tar.gz"
    expected = f"looked for {da} and {pe}; pairs with a dev split: aa-bb, cc-dd"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "fr-en", "dev")


def test_malformed_pair_and_missing_split_list_tarballs(tmp_path: Path) -> None:
    root = _make_root(tmp_path)
    present = f"tarballs present: {DA_TB}, {PE_TB}"
    with pytest.raises(DataError, match=r"pair 'aabb' is not of the form 'xx-yy'; " + re.escape(present)):
        read_pair(root, "aabb", "dev")
    with pytest.raises(DataError, match=r"no split 'test' .*; " + re.escape(present)):
        read_pair(root, "aa-bb", "test")
    with pytest.raises(DataError, match=r"no split 'tain'"):
        available_pairs(root, "tain")


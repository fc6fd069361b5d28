"""Tests for the MLQE-PE reader: the real data, then small synthetic tarballs per error."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mtl.data.mlqe import DataError, available_pairs, read_pair
from tests.mlqe_fixtures import DA, HEADER, PE, TSV, changed, make_root, write_tar

KEYS = {"pair", "lp", "index", "src", "mt", "pe", "da", "model_score", "hter", "mt_tags", "src_tags"}
PAIRS = ["en-de", "et-en", "ro-en", "si-en"]

def _mlqe_root() -> Path:
    """The shared real MLQE-PE root; skips the test when the data is not there."""
    root = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlqe-pe"
    if not root.is_dir():
        pytest.skip(f"real MLQE-PE data not found at {root}")
    return root


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
    rows = read_pair(make_root(tmp_path), "aa-bb", "dev")
    assert rows[0] == {
        "pair": "aa-bb",
        "lp": "aa-bb",
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
    rows = read_pair(make_root(tmp_path, da=da, pe=pe), "aa-bb", "dev")
    assert [r["da"] for r in rows] == [0.15, 0.35]
    assert [r["hter"] for r in rows] == [0.5, 0.0]


def test_pe_only_pair_has_no_da(tmp_path: Path) -> None:
    rows = read_pair(make_root(tmp_path, da=None), "aa-bb", "dev")
    assert len(rows) == 2
    assert all(r["da"] is None and r["model_score"] is None for r in rows)
    assert rows[1]["mt_tags"] is not None and rows[1]["mt"] == ["D", "E", "F"]


def test_da_only_pair_takes_text_from_da(tmp_path: Path) -> None:
    rows = read_pair(make_root(tmp_path, pe=None), "aa-bb", "dev")
    assert rows[0]["src"] == ["Say", '"hi,', "then."]
    assert rows[1]["mt"] == ["D", "E", "F"]
    for key in ("pe", "hter", "mt_tags", "src_tags"):
        assert all(r[key] is None for r in rows), key


def test_optional_pe_members_missing_give_none(tmp_path: Path) -> None:
    pe = changed(PE, {"aa-bb-dev/dev.pe": None, "aa-bb-dev/dev.hter": None, "aa-bb-dev/dev.tags": None})
    rows = read_pair(make_root(tmp_path, pe=pe), "aa-bb", "dev")
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
    root = make_root(tmp_path, da=changed(DA, da_changes), pe=changed(PE, pe_changes))
    expected = f"{root / tarball}: {member}: line {line}: {what}"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_missing_required_member(tmp_path: Path) -> None:
    root = make_root(tmp_path, pe=changed(PE, {"aa-bb-dev/dev.mt": None}))
    with pytest.raises(DataError, match=re.escape(f"{root / PE_TB}: *.mt: no such member")):
        read_pair(root, "aa-bb", "dev")


def test_duplicate_suffix_members_name_both(tmp_path: Path) -> None:
    root = make_root(tmp_path, pe={**PE, "old/dev.src": PE["aa-bb-dev/dev.src"]})
    expected = f"{root / PE_TB}: aa-bb-dev/dev.src, old/dev.src: both end in '.src'"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_da_pe_line_count_mismatch_names_both(tmp_path: Path) -> None:
    da = changed(DA, {TSV: DA[TSV] + "2\tf\tF\t[5]\t5\t[0.5]\t0.5\t0.1\n"})
    root = make_root(tmp_path, da=da)
    expected = f"{root / DA_TB}: {TSV}: line 4: 3 segments but {root / PE_TB}: aa-bb-dev/dev.src has 2 lines"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev")


def test_unknown_pair_lists_available(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    write_tar(root / "post-editing" / "dev" / "cc-dd-dev.tar.gz", PE)
    assert available_pairs(root, "dev") == ["aa-bb", "cc-dd"]
    da, pe = root / "direct-assessments/dev/fr-en-dev.tar.gz", root / "post-editing/dev/fr-en-dev.tar.gz"
    expected = f"looked for {da} and {pe}; pairs with a dev split: aa-bb, cc-dd"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "fr-en", "dev")


def test_malformed_pair_and_missing_split_list_tarballs(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    present = f"tarballs present: {DA_TB}, {PE_TB}"
    with pytest.raises(DataError, match=r"pair 'aabb' is not of the form 'xx-yy'; " + re.escape(present)):
        read_pair(root, "aabb", "dev")
    with pytest.raises(DataError, match=r"no split 'test' .*; " + re.escape(present)):
        read_pair(root, "aa-bb", "test")
    with pytest.raises(DataError, match=r"no split 'tain'"):
        available_pairs(root, "tain")


"""Tests for mtl.metrics: values worked out by hand, plus HTER recomputed on real MLQE-PE data."""

from __future__ import annotations

import math
import tarfile
import warnings
from pathlib import Path

import pytest

from mtl.metrics import (
    mt_tag_metrics,
    post_edit_metrics,
    sentence_metrics,
    sentence_ter,
    split_mt_tags,
    tag_metrics,
)


def _mlqe_pe_dir() -> Path:
    """The MLQE-PE data shared by all checkouts; a missing copy fails the test."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlqe-pe"
    if not path.is_dir():
        pytest.fail(f"MLQE-PE data not found at {path}; it is expected in ../shared/data/mlqe-pe")
    return path


def _read_members(archive: Path, suffixes: tuple[str, ...]) -> dict[str, list[str]]:
    """Lines of the members of ``archive`` whose names end with each suffix."""
    found: dict[str, list[str]] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            for suffix in suffixes:
                if member.isfile() and member.name.endswith(suffix):
                    fileobj = tar.extractfile(member)
                    assert fileobj is not None
                    # split("\n"), not splitlines(): text may hold U+2028 and the like.
                    found[suffix] = fileobj.read().decode("utf-8").split("\n")
    missing = [suffix for suffix in suffixes if suffix not in found]
    assert not missing, f"{archive} has no member ending with {missing}"
    return found


# sentence_metrics


def test_sentence_metrics_perfect_linear_relation() -> None:
    scores = sentence_metrics([1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 7.0, 9.0])  # gold = 2 * pred + 1
    assert scores["pearson"] == pytest.approx(1.0)
    assert scores["spearman"] == pytest.approx(1.0)
    assert scores["mae"] == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert scores["rmse"] == pytest.approx(math.sqrt((4 + 9 + 16 + 25) / 4))


def test_sentence_metrics_negative_relation() -> None:
    scores = sentence_metrics([1.0, 2.0, 3.0, 4.0], [8.0, 6.0, 4.0, 2.0])
    assert scores["pearson"] == pytest.approx(-1.0)
    assert scores["spearman"] == pytest.approx(-1.0)


def test_sentence_metrics_monotonic_but_not_linear() -> None:
    scores = sentence_metrics([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 100.0])
    assert scores["spearman"] == pytest.approx(1.0)
    assert scores["pearson"] < 0.9


@pytest.mark.parametrize(
    ("pred", "gold"),
    [([0.5, 0.5, 0.5], [0.1, 0.2, 0.3]), ([0.1, 0.2, 0.3], [0.0, 0.0, 0.0])],
    ids=["constant-pred", "constant-gold"],
)
def test_sentence_metrics_constant_input_gives_nan_without_warning(
    pred: list[float], gold: list[float]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = sentence_metrics(pred, gold)
    assert math.isnan(scores["pearson"])
    assert math.isnan(scores["spearman"])
    assert not math.isnan(scores["mae"])


def test_sentence_metrics_length_mismatch() -> None:
    with pytest.raises(ValueError, match="same length, but got 3 and 2"):
        sentence_metrics([0.1, 0.2, 0.3], [0.1, 0.2])


# tag_metrics


def test_tag_metrics_perfect_prediction() -> None:
    gold = [[0, 1, 0], [1, 1]]
    scores = tag_metrics(gold, gold)
    assert scores == pytest.approx({"mcc": 1.0, "f1_ok": 1.0, "f1_bad": 1.0, "f1_mult": 1.0})


def test_tag_metrics_hand_built_confusion_over_flattened_sentences() -> None:
    # Flattened gold 0 0 0 1 | 1 1 0 0 against pred 0 0 1 1 | 1 0 0 0:
    # BAD: tp=2 fp=1 fn=1 tn=4 -> F1_bad = 4/6, F1_ok = 8/10, MCC = (2*4 - 1*1) / sqrt(3*3*5*5).
    gold = [[0, 0, 0, 1], [1, 1, 0, 0]]
    pred = [[0, 0, 1, 1], [1, 0, 0, 0]]
    scores = tag_metrics(pred, gold)
    assert scores["f1_bad"] == pytest.approx(2 / 3)
    assert scores["f1_ok"] == pytest.approx(4 / 5)
    assert scores["f1_mult"] == pytest.approx(8 / 15)
    assert scores["mcc"] == pytest.approx(7 / 15)


def test_tag_metrics_all_wrong_bad_absent_gives_zero_f1_and_undefined_mcc() -> None:
    scores = tag_metrics([[1, 1, 1]], [[0, 0, 0]])
    assert math.isnan(scores.pop("mcc"))  # gold holds one tag only: MCC is undefined (sklearn says 0)
    assert scores == pytest.approx({"f1_ok": 0.0, "f1_bad": 0.0, "f1_mult": 0.0})


def test_tag_metrics_no_bad_anywhere_leaves_mcc_and_bad_f1_undefined() -> None:
    scores = tag_metrics([[0, 0], [0]], [[0, 0], [0]])
    assert math.isnan(scores["mcc"]) and math.isnan(scores["f1_bad"]) and math.isnan(scores["f1_mult"])
    assert scores["f1_ok"] == 1.0
    missed = tag_metrics([[0, 0, 0]], [[0, 1, 0]])  # no BAD predicted: MCC undefined, F1 BAD 0
    assert math.isnan(missed["mcc"]) and missed["f1_bad"] == 0.0 and missed["f1_ok"] == pytest.approx(0.8)


def test_tag_metrics_sentence_length_mismatch_names_index() -> None:
    with pytest.raises(ValueError, match=r"sentence 1: .*but got 3 and 2"):
        tag_metrics([[0, 1], [0, 1, 1]], [[0, 1], [0, 1]])


def test_tag_metrics_sentence_count_mismatch() -> None:
    with pytest.raises(ValueError, match="number of sentences, but got 2 and 1"):
        tag_metrics([[0], [1]], [[0]])


def test_tag_metrics_rejects_unknown_tag() -> None:
    with pytest.raises(ValueError, match=r"0 \(OK\) or 1 \(BAD\), but got \[2\]"):
        tag_metrics([[0, 2]], [[0, 1]])


# split_mt_tags and mt_tag_metrics


def test_split_mt_tags_seven_tags() -> None:
    #      gap w1 gap w2 gap w3 gap
    tags = [0, 1, 1, 0, 0, 1, 0]
    words, gaps = split_mt_tags(tags)
    assert words == [1, 0, 1]
    assert gaps == [0, 1, 0, 0]


def test_split_mt_tags_rejects_even_length() -> None:
    with pytest.raises(ValueError, match=r"odd length 2n\+1 .*got length 4"):
        split_mt_tags([0, 1, 0, 1])


def test_mt_tag_metrics_words_gaps_all() -> None:
    # gold: gaps 0 0 0, words 1 0; pred: words right, every gap wrong.
    gold = [[0, 1, 0, 0, 0]]
    pred = [[1, 1, 1, 0, 1]]
    scores = mt_tag_metrics(pred, gold)
    assert set(scores) == {
        f"{prefix}{key}"
        for prefix in ("words_", "gaps_", "all_")
        for key in ("mcc", "f1_ok", "f1_bad", "f1_mult")
    }
    assert scores["words_mcc"] == pytest.approx(1.0)
    assert scores["words_f1_mult"] == pytest.approx(1.0)
    assert scores["gaps_f1_ok"] == pytest.approx(0.0)
    assert scores["gaps_f1_bad"] == pytest.approx(0.0)
    # all: BAD tp=1 fp=3 fn=0 tn=1 -> F1_bad = 2/5, F1_ok = 2/5, MCC = 1 / sqrt(4*1*4*1).
    assert scores["all_f1_bad"] == pytest.approx(0.4)
    assert scores["all_f1_ok"] == pytest.approx(0.4)
    assert scores["all_mcc"] == pytest.approx(0.25)


def test_mt_tag_metrics_even_length_names_sentence() -> None:
    tags = [[0, 1, 0], [0, 1]]
    with pytest.raises(ValueError, match="sentence 1: MT tags must have odd length"):
        mt_tag_metrics(tags, tags)


def test_mt_tag_metrics_length_mismatch_names_sentence() -> None:
    with pytest.raises(ValueError, match=r"sentence 0: .*but got 5 and 3"):
        mt_tag_metrics([[0, 1, 0, 1, 0]], [[0, 1, 0]])


# post_edit_metrics and sentence_ter


def test_post_edit_metrics_identical_is_perfect_and_no_mt_keys() -> None:
    refs = ["the cat sat on the mat .", "a quick brown fox jumps over the lazy dog ."]
    scores = post_edit_metrics(refs, refs)
    assert set(scores) == {"bleu", "chrf", "ter"}
    assert scores["bleu"] == pytest.approx(100.0)
    assert scores["chrf"] == pytest.approx(100.0)
    assert scores["ter"] == pytest.approx(0.0)


def test_post_edit_metrics_mt_baseline() -> None:
    refs = ["the cat sat on the mat"]
    scores = post_edit_metrics(refs, refs, mt=["the cat sat on a mat"])
    assert set(scores) == {"bleu", "chrf", "ter", "mt_bleu", "mt_chrf", "mt_ter"}
    assert scores["ter"] == pytest.approx(0.0)
    assert scores["mt_ter"] == pytest.approx(100 / 6)  # one substitution in six words
    assert scores["mt_bleu"] < 100.0


def test_post_edit_metrics_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"hyps and refs .* got 1 and 2"):
        post_edit_metrics(["a"], ["a", "b"])
    with pytest.raises(ValueError, match=r"mt and refs .* got 1 and 2"):
        post_edit_metrics(["a", "b"], ["a", "b"], mt=["a"])


def test_sentence_ter_hand_values_and_cap() -> None:
    assert sentence_ter("a b c d", "a b c d") == pytest.approx(0.0)
    assert sentence_ter("a b c x", "a b c d") == pytest.approx(0.25)
    assert sentence_ter("a b c d e f", "a") == 1.0  # 5 deletions, 1-word ref: 5.0, capped


def test_sentence_ter_reproduces_mlqe_pe_hter() -> None:
    archive = _mlqe_pe_dir() / "post-editing" / "dev" / "en-de-dev.tar.gz"
    lines = _read_members(archive, (".mt", ".pe", ".hter"))
    n = 200
    mts, pes, hters = lines[".mt"][:n], lines[".pe"][:n], lines[".hter"][:n]
    assert len(mts) == len(pes) == len(hters) == n
    mismatches = [
        (i, float(hter), sentence_ter(mt, pe))
        for i, (mt, pe, hter) in enumerate(zip(mts, pes, hters))
        if abs(sentence_ter(mt, pe) - float(hter)) > 1e-4
    ]
    assert not mismatches, f"(line, hter, sentence_ter) differing: {mismatches[:5]}"

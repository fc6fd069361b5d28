"""Evaluation metrics for QE tasks, as WMT scores them: pure functions over plain sequences.

Sentence-level scores (HTER / DA) use Pearson and Spearman correlation plus MAE and RMSE;
word-level tags (0 = OK, 1 = BAD) use MCC and per-label F1; post-editing uses sacrebleu's
corpus BLEU, chrF and TER. Every metric is the scipy / scikit-learn / sacrebleu one.

One convention for a metric that is undefined on the data: NaN (the reports show "undefined").
Pearson and Spearman of constant predictions or gold; MCC when predictions or gold hold one tag
only (no BAD predicted, say: sklearn would say 0); a label's F1 when that label is neither
predicted nor gold. An objective with an undefined term is undefined too.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from sacrebleu.metrics import BLEU, CHRF, TER
from scipy.stats import ConstantInputWarning, pearsonr, spearmanr
from sklearn.metrics import (
    f1_score,
    matthews_corrcoef,
    mean_absolute_error,
    root_mean_squared_error,
)

from mtl.data.parse import IGNORE

OK, BAD = 0, 1


def sentence_metrics(pred: Sequence[float], gold: Sequence[float]) -> dict[str, float]:
    """Score sentence-level predictions against gold scores.

    Args:
        pred: Predicted scores, one per sentence.
        gold: Gold scores, one per sentence.

    Returns:
        ``pearson`` and ``spearman`` correlation (``nan`` when either side is constant, where
        correlation is undefined), ``mae`` and ``rmse``.

    Raises:
        ValueError: ``pred`` and ``gold`` differ in length.
    """
    if len(pred) != len(gold):
        raise ValueError(
            f"pred and gold must have the same length, but got {len(pred)} and {len(gold)}"
        )
    with warnings.catch_warnings():
        # Constant input: scipy returns nan and warns; nan is the answer we want.
        warnings.simplefilter("ignore", ConstantInputWarning)
        pearson = float(pearsonr(pred, gold).statistic)
        spearman = float(spearmanr(pred, gold).statistic)
    return {
        "pearson": pearson,
        "spearman": spearman,
        "mae": float(mean_absolute_error(gold, pred)),
        "rmse": float(root_mean_squared_error(gold, pred)),
    }


def tag_metrics(pred: Sequence[Sequence[int]], gold: Sequence[Sequence[int]]) -> dict[str, float]:
    """Score word-level tags (0 = OK, 1 = BAD) over all sentences flattened together.

    Args:
        pred: Predicted tags, one sequence per sentence.
        gold: Gold tags, one sequence per sentence, each as long as its prediction.

    Gold tags ``IGNORE`` (not given) are left out, with their predictions.

    Returns:
        ``mcc`` (NaN when predictions or gold hold one tag only), ``f1_ok``, ``f1_bad`` (F1 of
        each label, NaN when the label is neither predicted nor gold) and ``f1_mult``
        (``f1_ok * f1_bad``).

    Raises:
        ValueError: The sentence counts or a sentence's lengths differ, a tag is not 0 or 1,
            or there are no tags at all.
    """
    _check_sentences(pred, gold)
    pairs = [(p, g) for ps, gs in zip(pred, gold) for p, g in zip(ps, gs) if g != IGNORE]
    flat_pred, flat_gold = [p for p, _ in pairs], [g for _, g in pairs]
    unknown = sorted(set(flat_pred).union(flat_gold) - {OK, BAD})
    if unknown:
        raise ValueError(f"tags must be {OK} (OK) or {BAD} (BAD), but got {unknown}")
    if not flat_gold:  # every gold tag is missing (word-only tags have no gap tags): nothing to score
        return dict.fromkeys(("mcc", "f1_ok", "f1_bad", "f1_mult"), math.nan)
    f1_ok, f1_bad = f1_score(
        flat_gold, flat_pred, labels=[OK, BAD], average=None, zero_division=math.nan
    )
    one_tag = len(set(flat_pred)) < 2 or len(set(flat_gold)) < 2  # a marginal of MCC's denominator is 0
    return {
        "mcc": math.nan if one_tag else float(matthews_corrcoef(flat_gold, flat_pred)),
        "f1_ok": float(f1_ok),
        "f1_bad": float(f1_bad),
        "f1_mult": float(f1_ok * f1_bad),
    }


def split_mt_tags(tags: Sequence[int]) -> tuple[list[int], list[int]]:
    """Split interleaved MT tags ``gap, word, gap, ..., word, gap`` into words and gaps.

    Args:
        tags: The ``2n + 1`` tags of a sentence of ``n`` MT words; even positions are gaps.

    Returns:
        ``(word_tags, gap_tags)``, of lengths ``n`` and ``n + 1``.

    Raises:
        ValueError: ``len(tags)`` is even, so not of the form ``2n + 1``.
    """
    if len(tags) % 2 != 1:
        raise ValueError(
            f"MT tags must have odd length 2n+1 (gap, word, ..., gap), but got length {len(tags)}"
        )
    return list(tags[1::2]), list(tags[0::2])


def mt_tag_metrics(
    pred: Sequence[Sequence[int]], gold: Sequence[Sequence[int]]
) -> dict[str, float]:
    """Score interleaved MT tags on words, on gaps, and on both, as WMT QE does.

    Args:
        pred: Predicted MT tags, ``2n + 1`` per sentence of ``n`` words.
        gold: Gold MT tags, each as long as its prediction.

    Returns:
        The keys of :func:`tag_metrics`, prefixed ``words_``, ``gaps_`` and ``all_``.

    Raises:
        ValueError: The sentence counts or a sentence's lengths differ, a sentence's length
            is even, or :func:`tag_metrics` rejects the tags.
    """
    _check_sentences(pred, gold)
    pred_words: list[list[int]] = []
    pred_gaps: list[list[int]] = []
    gold_words: list[list[int]] = []
    gold_gaps: list[list[int]] = []
    for i, (p, g) in enumerate(zip(pred, gold)):
        try:
            p_words, p_gaps = split_mt_tags(p)
            g_words, g_gaps = split_mt_tags(g)
        except ValueError as e:
            raise ValueError(f"sentence {i}: {e}") from e
        pred_words.append(p_words)
        pred_gaps.append(p_gaps)
        gold_words.append(g_words)
        gold_gaps.append(g_gaps)
    scores: dict[str, float] = {}
    for prefix, p_tags, g_tags in (
        ("words_", pred_words, gold_words),
        ("gaps_", pred_gaps, gold_gaps),
        ("all_", pred, gold),
    ):
        scores.update({prefix + key: value for key, value in tag_metrics(p_tags, g_tags).items()})
    return scores


def post_edit_metrics(
    hyps: Sequence[str], refs: Sequence[str], *, mt: Sequence[str] | None = None
) -> dict[str, float]:
    """Corpus BLEU, chrF and TER (sacrebleu defaults) of post-edits against references.

    Args:
        hyps: Predicted post-edits, one per sentence.
        refs: Reference post-edits, one per sentence.
        mt: The untouched MT output; when given, it is scored the same way as the
            do-nothing baseline.

    Returns:
        ``bleu``, ``chrf``, ``ter`` (sacrebleu's 0-100 scale) and, when ``mt`` is given,
        ``mt_bleu``, ``mt_chrf``, ``mt_ter``.

    Raises:
        ValueError: ``hyps``, ``refs`` (or ``mt``) differ in length.
    """
    if len(hyps) != len(refs):
        raise ValueError(
            f"hyps and refs must have the same length, but got {len(hyps)} and {len(refs)}"
        )
    if mt is not None and len(mt) != len(refs):
        raise ValueError(
            f"mt and refs must have the same length, but got {len(mt)} and {len(refs)}"
        )
    scores = _corpus_scores(hyps, refs, prefix="")
    if mt is not None:
        scores.update(_corpus_scores(mt, refs, prefix="mt_"))
    return scores


def sentence_ter(hyp: str, ref: str) -> float:
    """Sentence TER as a fraction capped at 1.0: the HTER definition of the MLQE-PE data.

    Args:
        hyp: The hypothesis (MT output or predicted post-edit).
        ref: The reference post-edit.

    Returns:
        ``min(TER / 100, 1.0)`` with sacrebleu's default TER.
    """
    return min(TER().sentence_score(hyp, [ref]).score / 100, 1.0)


def _check_sentences(pred: Sequence[Sequence[int]], gold: Sequence[Sequence[int]]) -> None:
    if len(pred) != len(gold):
        raise ValueError(
            "pred and gold must have the same number of sentences, "
            f"but got {len(pred)} and {len(gold)}"
        )
    for i, (p, g) in enumerate(zip(pred, gold)):
        if len(p) != len(g):
            raise ValueError(
                f"sentence {i}: pred and gold must have the same length, "
                f"but got {len(p)} and {len(g)}"
            )


def _corpus_scores(hyps: Sequence[str], refs: Sequence[str], *, prefix: str) -> dict[str, float]:
    references = [list(refs)]
    return {
        f"{prefix}bleu": float(BLEU(force=True).corpus_score(list(hyps), references).score),
        f"{prefix}chrf": float(CHRF().corpus_score(list(hyps), references).score),
        f"{prefix}ter": float(TER().corpus_score(list(hyps), references).score),
    }

"""How sure: bootstrap intervals of the top configs' dev metrics, and a paired test of the
winner against the runner-up, per pair.

Each trial's dev predictions (``<run_dir>/predictions/<pair>.<split>/<task>/predictions.txt``;
per_pair studies ``<run_dir>/<pair>/predictions/...``) are joined to the gold labels of the
dataset (read from the source the trial's config names) by segment index. The segments are
resampled with replacement ``n`` times; every config is scored on the *same* resamples (so the paired
differences are paired), with :func:`mtl.metrics.sentence_metrics`. Interval: the 2.5 and
97.5 percentiles. Paired test (one-sided, as Koehn 2004): p is the share of resamples on
which the winner is not better than the runner-up; significant when p < alpha.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mtl.catalogue import SENTENCE_TASKS, TASKS, metric_direction
from reports.aggregate import Aggregation
from reports.extract import StudyData, TrialData

log = logging.getLogger(__name__)

__all__ = ["PairTest", "Uncertainty", "align_predictions", "bootstrap", "interval", "paired_p", "read_predictions",
           "uncertainty", "verdict"]


@dataclass(frozen=True)
class PairTest:
    """The winner against the runner-up on one pair."""

    pair: str
    winner: int
    runner_up: int
    delta: float
    """Winner minus runner-up, oriented so that positive means the winner is better."""
    p: float
    significant: bool


@dataclass(frozen=True)
class Uncertainty:
    """Intervals and tests of one sentence-level metric."""

    metric: str
    """``task.metric`` that was resampled, e.g. ``da.pearson``."""
    split: str
    n: int
    alpha: float
    intervals: dict[str, dict[int, tuple[float, float, float]]] = field(default_factory=dict)
    """Pair -> trial -> (point estimate, low, high)."""
    segments: dict[str, int] = field(default_factory=dict)
    tests: list[PairTest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Why something could not be computed."""


def read_predictions(path: str | Path) -> dict[int, float]:
    """Segment -> score of a sentence-level prediction file (``pair\\tmethod\\tsegment\\tscore``)."""
    out = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            _, _, segment, score = line.split("\t")
            out[int(segment)] = float(score)
    return out


def predictions_path(trial: TrialData, pair: str, task: str, *, split: str) -> Path | None:
    """Where the trainer wrote a trial's predictions of one pair and task (None: it stored no config)."""
    if trial.configs is None or trial.run_dir is None:
        return None
    return trial.configs.run_dir_of(trial.run_dir, pair).prediction(pair, split, task)


def score(pred: np.ndarray, gold: np.ndarray, metric: str) -> float:
    """One sentence-level metric, as the trainer computes it (:mod:`mtl.metrics`)."""
    from mtl.metrics import sentence_metrics

    return sentence_metrics(pred.tolist(), gold.tolist())[metric]


def bootstrap(preds: Mapping[int, np.ndarray], gold: np.ndarray, *, metric: str, n: int,
              seed: int = 0) -> dict[int, np.ndarray]:
    """Each config's metric on the same ``n`` resamples of the segments.

    Args:
        preds: Trial -> predictions aligned with ``gold``.
        gold: Gold labels.
        metric: ``pearson``, ``spearman``, ``mae`` or ``rmse``.
        n: Resamples.
        seed: Seed of the resampling.

    Returns:
        Trial -> the ``n`` resampled metric values.
    """
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(gold), size=(n, len(gold)))
    return {t: np.array([score(p[i], gold[i], metric) for i in idx]) for t, p in preds.items()}


def interval(samples: np.ndarray, *, alpha: float = 0.05) -> tuple[float, float]:
    """The percentile interval of the resampled values (NaN resamples left out)."""
    finite = samples[np.isfinite(samples)]
    if not finite.size:
        return float("nan"), float("nan")
    return float(np.percentile(finite, 100 * alpha / 2)), float(np.percentile(finite, 100 * (1 - alpha / 2)))


def paired_p(winner: np.ndarray, runner_up: np.ndarray, *, higher_is_better: bool) -> float:
    """Share of resamples on which the winner is not strictly better (NaN ones count as not)."""
    delta = winner - runner_up if higher_is_better else runner_up - winner
    return float(np.mean(~(delta > 0)))


def uncertainty(data: StudyData, agg: Aggregation, *, top: int = 3, method: str | None = None, n: int = 1000,
                seed: int = 0, alpha: float = 0.05, data_root: str | None = None) -> Uncertainty:
    """Intervals for the top configs and a paired test of the first two, per pair.

    Args:
        data: The extracted study.
        agg: Its aggregation.
        top: How many of the best configs get intervals.
        method: The ranking that names the top configs (default: the study's aggregator).
        n: Bootstrap resamples.
        seed: Resampling seed.
        alpha: 1 - the interval's coverage, and the test's level.
        data_root: MLQE-PE root for the gold labels (default: each trial's ``data.root``).

    Returns:
        The :class:`Uncertainty`; what could not be computed is said in its ``notes``.
    """
    order = agg.rankings.get(method or data.aggregator) or agg.rankings.get("mean", [])
    chosen = [data.trial(t) for t in order[:top]]
    if not chosen:
        return Uncertainty(metric="?", split="dev", n=n, alpha=alpha, notes=["no complete config to resample"])
    name = sentence_metric(chosen[0], agg.metric)
    split = str(chosen[0].config.get("data", {}).get("eval_split", "dev"))
    out = Uncertainty(metric=name or "?", split=split, n=n, alpha=alpha)
    if name is None:
        out.notes.append(f"{agg.metric}: no sentence-level task (da, hter) to resample")
        return out
    task, metric = name.split(".")
    higher = metric_direction(name) == "maximize"
    for pair in data.pairs:
        aligned = align_predictions(chosen, pair, task, split, data_root, out.notes)
        if aligned is None:
            continue
        gold, preds = aligned
        samples = bootstrap(preds, gold, metric=metric, n=n, seed=seed)
        out.segments[pair] = len(gold)
        out.intervals[pair] = {t: (score(preds[t], gold, metric), *interval(s, alpha=alpha))
                               for t, s in samples.items()}
        if len(chosen) >= 2:
            w, r = chosen[0].number, chosen[1].number
            p = paired_p(samples[w], samples[r], higher_is_better=higher)
            delta = out.intervals[pair][w][0] - out.intervals[pair][r][0]
            out.tests.append(PairTest(pair=pair, winner=w, runner_up=r, delta=delta if higher else -delta, p=p,
                                      significant=p < alpha))
    return out


def sentence_metric(trial: TrialData, objective: str) -> str | None:
    """The sentence-level ``task.metric`` to resample for an objective: the objective itself
    when it is one, else the first sentence-level term of the trainer's objective."""
    terms = [objective, *((trial.config.get("train") or {}).get("objective") or {})]
    terms += [f"{t}.{TASKS[t].primary}" for t in SENTENCE_TASKS if t in (trial.config.get("tasks") or {})]
    for term in terms:
        task, _, metric = term.partition(".")
        if task in SENTENCE_TASKS and metric in TASKS[task].metrics:
            return term
    return None


def align_predictions(trials: Sequence[TrialData], pair: str, task: str, split: str, data_root: str | None,
                      notes: list[str]) -> tuple[np.ndarray, dict[int, np.ndarray]] | None:
    """Gold labels and each trial's predictions of one pair and task, on their common segments.

    Returns:
        ``(gold, {trial: predictions})``, or None after appending the reason to ``notes``.
    """
    from mtl.config_loader import ConfigError
    from mtl.data.parse import DataError

    preds = {}
    for t in trials:
        path = predictions_path(t, pair, task, split=split)
        if path is None or not path.is_file():
            notes.append(f"{pair}: trial {t.number} has no predictions file {path}")
            return None
        preds[t.number] = read_predictions(path)
    try:
        records = trials[0].data_source(pair, root=data_root).read(pair, split)
    except (DataError, ConfigError, OSError) as e:
        notes.append(f"{pair}: cannot read the gold labels: {e}")
        return None
    gold = {r["index"]: r[task] for r in records if r.get(task) is not None}
    common = sorted(set(gold).intersection(*(set(p) for p in preds.values())))
    if len(common) < 3:
        notes.append(f"{pair}: only {len(common)} segments with gold {task} and every top config's prediction")
        return None
    return np.array([gold[i] for i in common]), {t: np.array([p[i] for i in common]) for t, p in preds.items()}


def verdict(unc: Uncertainty, *, method: str) -> list[str]:
    """Whether the winner is significantly better than the runner-up, in words.

    Args:
        unc: The intervals and tests.
        method: The ranking that named winner and runner-up (for the text).

    Returns:
        Sentences for the report: the pairs where the winner is significantly better, and
        those where it is not.
    """
    if not unc.tests:
        return [f"No paired test: {'; '.join(unc.notes) or 'fewer than two complete configs'}."]
    w, r = unc.tests[0].winner, unc.tests[0].runner_up
    yes = [t for t in unc.tests if t.significant]
    no = [t for t in unc.tests if not t.significant]

    def each(tests: list[PairTest]) -> str:
        return ", ".join(f"{t.pair} (Δ {unc.metric} {t.delta:+.4f}, p = {t.p:.3f}, {unc.segments[t.pair]} segments)"
                         for t in tests)
    head = f"Trial {w}, the winner by {method}, against trial {r}, the runner-up, on dev {unc.metric} (paired " \
           f"bootstrap, {unc.n} resamples, level {unc.alpha:g}): "
    if not no:
        return [head + f"significantly better on every pair: {each(yes)}."]
    if not yes:
        return [head + f"not significantly better on any pair: {each(no)}. On this dev data the two are "
                       f"within noise; prefer the simpler or cheaper one, or evaluate on more data."]
    return [head + f"significantly better on {each(yes)}.",
            f"Not significantly better on {each(no)}: there the choice is within noise."]

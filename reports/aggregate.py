"""Per-config scores across pairs, by every aggregator, the rankings and how much they agree.

The score aggregators are the study's own (:data:`reports.aggregators.AGGREGATORS`), plus Borda,
a ranking-level method added here. In a report every configuration is judged against *all*
the other complete configurations: the relative aggregators (``mean_rank``, ``mean_z``) get
the others' per-pair scores as their history, so their values differ from the ones the study
recorded while it ran (against the trials finished before). Borda: on each pair a config
gets one point per config it beats and half a point per tie; the points add up over pairs.

Only *complete* configs are ranked: those with a finite score on every pair of the study. A
config missing a pair (or with a NaN) is listed in :attr:`Aggregation.incomplete`, unranked.
Imports neither torch, ray nor plotly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from mtl.catalogue import metric_direction
from reports.aggregators import AGGREGATORS, pair_metric
from reports.extract import ReportError, StudyData

Direction = Literal["maximize", "minimize"]
METHODS: tuple[str, ...] = (*AGGREGATORS, "borda")
"""Every method a report ranks by: the study's aggregators and Borda."""

__all__ = ["METHODS", "Aggregation", "aggregate", "borda", "kendall", "pair_scores", "ranking"]


@dataclass(frozen=True)
class Aggregation:
    """Scores and rankings of the complete configs by every method."""

    metric: str
    direction: Direction
    scores: dict[int, dict[str, float]]
    """Trial -> pair -> score of the complete configs."""
    by_method: dict[str, dict[int, float]]
    """Method -> trial -> aggregate score."""
    rankings: dict[str, list[int]]
    """Method -> trials, best first (ties: lower trial number first)."""
    ranks: dict[str, dict[int, int]]
    """Method -> trial -> competition rank (1, 1, 3: tied configs share the better rank)."""
    tau: dict[tuple[str, str], float]
    """Kendall tau-b between the scores of two methods (NaN with fewer than 2 configs)."""
    incomplete: dict[int, list[str]]
    """Trial -> the study's pairs it has no finite score on."""

    def higher_is_better(self, method: str) -> bool:
        """Whether a higher aggregate is better (Borda always; the others: the metric's direction)."""
        return method == "borda" or self.direction == "maximize"


def pair_scores(data: StudyData, metric: str) -> dict[int, dict[str, float]]:
    """Per COMPLETE trial, the per-pair scores of one objective.

    ``pair_scores`` recorded by the search first; for a ``task.metric`` not among them, the
    trial's ``metrics``.
    """
    out: dict[int, dict[str, float]] = {}
    for t in data.complete:
        if metric in t.pair_scores:
            out[t.number] = {p: float(v) for p, v in t.pair_scores[metric].items()}
        elif metric != "objective" and t.metrics:
            try:
                out[t.number] = pair_metric(t.metrics, metric)
            except ValueError:
                out[t.number] = {}
        else:
            out[t.number] = {}
    return out


def borda(scores: Mapping[int, Mapping[str, float]], *, direction: Direction) -> dict[int, float]:
    """Borda count over pairs: per pair one point per config beaten, half per tie.

    Args:
        scores: Trial -> pair -> score, every trial with the same pairs.
        direction: Whether a higher score is better on each pair.

    Returns:
        Trial -> points (higher is better).
    """
    points = {t: 0.0 for t in scores}
    pairs = sorted({p for s in scores.values() for p in s})
    for pair in pairs:
        for t, s in scores.items():
            mine = s[pair]
            for u, other in scores.items():
                if u == t:
                    continue
                theirs = other[pair]
                better = mine > theirs if direction == "maximize" else mine < theirs
                points[t] += 1.0 if better else 0.5 if mine == theirs else 0.0
    return points


def ranking(values: Mapping[int, float], *, higher_is_better: bool) -> tuple[list[int], dict[int, int]]:
    """Order trials by value, best first (ties by trial number), and their competition ranks."""
    key = (lambda t: (-values[t], t)) if higher_is_better else (lambda t: (values[t], t))
    order = sorted(values, key=key)
    ranks: dict[int, int] = {}
    for i, t in enumerate(order):
        ranks[t] = ranks[order[i - 1]] if i and values[order[i - 1]] == values[t] else i + 1
    return order, ranks


def kendall(a: Mapping[int, float], b: Mapping[int, float]) -> float:
    """Kendall tau-b (scipy) between two score maps over their common trials; NaN when undefined."""
    import warnings

    from scipy.stats import kendalltau

    common = sorted(set(a) & set(b))
    if len(common) < 2:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant input: scipy warns and returns NaN
        return float(kendalltau([a[t] for t in common], [b[t] for t in common]).statistic)


def aggregate(data: StudyData, *, metric: str | None = None, methods: Sequence[str] = METHODS) -> Aggregation:
    """Score, rank and compare the complete configs of a study by each method.

    Args:
        data: The extracted study.
        metric: Which objective (default: the study's first).
        methods: Names from :data:`METHODS`.

    Returns:
        The :class:`Aggregation`.

    Raises:
        ReportError: An unknown metric or method.
    """
    metric = metric or data.metric_names[0]
    if metric not in data.metric_names and "." not in metric:
        raise ReportError(f"unknown metric {metric!r}; the study's: {', '.join(data.metric_names)}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ReportError(f"unknown aggregator {unknown[0]!r}; valid: {', '.join(METHODS)}")
    if metric in data.metric_names:
        direction: Direction = data.directions[data.metric_names.index(metric)]  # type: ignore[assignment]
    else:
        try:
            direction = metric_direction(metric)
        except KeyError as e:
            raise ReportError(f"unknown metric {metric!r}: {e.args[0]}") from e
    everything = pair_scores(data, metric)
    pairs = data.pairs or sorted({p for s in everything.values() for p in s})
    incomplete = {t: [p for p in pairs if not _finite(s.get(p))] for t, s in everything.items()}
    incomplete = {t: missing for t, missing in incomplete.items() if missing}
    scores = {t: {p: s[p] for p in pairs} for t, s in everything.items() if t not in incomplete}
    by_method: dict[str, dict[int, float]] = {}
    for m in methods:
        if m == "borda":
            by_method[m] = borda(scores, direction=direction)
            continue
        fn = AGGREGATORS[m]
        by_method[m] = {t: float(fn(s, [o for u, o in scores.items() if u != t], direction=direction))
                        for t, s in scores.items()}
    rankings, ranks = {}, {}
    for m, values in by_method.items():
        rankings[m], ranks[m] = ranking(values, higher_is_better=m == "borda" or direction == "maximize")
    # tau on values oriented so that higher is better for every method
    oriented = {m: {t: (v if m == "borda" or direction == "maximize" else -v) for t, v in vals.items()}
                for m, vals in by_method.items()}
    tau = {(a, b): kendall(oriented[a], oriented[b]) for a in methods for b in methods}
    return Aggregation(metric=metric, direction=direction, scores=scores, by_method=by_method, rankings=rankings,
                       ranks=ranks, tau=tau, incomplete=incomplete)


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)

"""How one config's per-pair scores become one number: the aggregators, one registry.

The search optimises one of them (a trial's value, as it runs) and the reports rank by all of
them (against every other config); both ask this registry. Imports nothing heavy.

A space's ``objective`` names metrics (``"da.pearson"``, or ``"objective"``: the trainer's own
early-stopping value) and one aggregator that turns a metric's per-pair values into one
number. Aggregators live in the plain-dict registry :data:`AGGREGATORS`; each is
``fn(scores, history, *, direction) -> float`` where ``scores`` is ``{pair: value}`` of this
trial and ``history`` holds the ``{pair: value}`` of the trials that finished before it.

Every aggregator keeps the metric's orientation (higher is better for a ``maximize`` metric,
lower for a ``minimize`` one), so the study optimizes each aggregate in its metric's
direction. A NaN among ``scores`` makes the aggregate NaN, so a broken trial cannot look good.

``mean``, ``median`` and ``worst`` ignore the history. ``mean_rank`` and ``mean_z`` are
*relative to the trials finished before*: the same metrics score differently early and late
in a study, and a trial's value is never recomputed as later trials finish. They suit pairs
whose metrics live on different scales (a pair where every config scores well would
otherwise dominate the mean); compare their values within one study only.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

Direction = Literal["maximize", "minimize"]
Aggregator = Callable[..., float]

__all__ = ["AGGREGATORS", "Direction", "pair_metric"]


def _check(scores: Mapping[str, float]) -> list[float]:
    if not scores:
        raise ValueError("no per-pair scores to aggregate, got {}")
    return [float(v) for v in scores.values()]


def _mean(scores: Mapping[str, float], history: Sequence[Mapping[str, float]], *,
          direction: Direction) -> float:
    """The mean over pairs."""
    return statistics.fmean(_check(scores))


def _median(scores: Mapping[str, float], history: Sequence[Mapping[str, float]], *,
            direction: Direction) -> float:
    """The median over pairs."""
    values = _check(scores)
    return math.nan if any(math.isnan(v) for v in values) else statistics.median(values)


def _worst(scores: Mapping[str, float], history: Sequence[Mapping[str, float]], *,
           direction: Direction) -> float:
    """The worst pair: the minimum for a maximize metric, the maximum for a minimize one."""
    values = _check(scores)
    if any(math.isnan(v) for v in values):  # min/max with NaN depend on the order
        return math.nan
    return min(values) if direction == "maximize" else max(values)


def _history_of(pair: str, history: Sequence[Mapping[str, float]]) -> list[float]:
    values = (h.get(pair) for h in history)
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _mean_rank(scores: Mapping[str, float], history: Sequence[Mapping[str, float]], *,
               direction: Direction) -> float:
    """Per pair, this trial's standing among the earlier trials, averaged over pairs.

    maximize: the share of earlier trials it beats or ties (1.0 = best so far);
    minimize: the share of earlier trials strictly better (0.0 = best so far), so lower is
    better as for the metric. A pair with no earlier values counts as best so far. Earlier
    NaN values are left out.
    """
    values = _check(scores)
    if any(math.isnan(v) for v in values):
        return math.nan
    standing = []
    for pair, value in scores.items():
        past = _history_of(pair, history)
        if not past:
            standing.append(1.0 if direction == "maximize" else 0.0)
        elif direction == "maximize":
            standing.append(sum(value >= h for h in past) / len(past))
        else:
            standing.append(sum(h < value for h in past) / len(past))
    return statistics.fmean(standing)


def _mean_z(scores: Mapping[str, float], history: Sequence[Mapping[str, float]], *,
            direction: Direction) -> float:
    """Per pair, ``(value - mean) / std`` of the earlier trials' values, averaged over pairs.

    ``std`` is the sample standard deviation; a pair with fewer than 2 earlier values, or
    with a std of 0, contributes 0. The z-score keeps the metric's orientation.
    """
    values = _check(scores)
    if any(math.isnan(v) for v in values):
        return math.nan
    z = []
    for pair, value in scores.items():
        past = _history_of(pair, history)
        std = statistics.stdev(past) if len(past) >= 2 else 0.0
        z.append((value - statistics.fmean(past)) / std if std > 0 else 0.0)
    return statistics.fmean(z)


AGGREGATORS: dict[str, Aggregator] = {
    "mean": _mean,
    "median": _median,
    "worst": _worst,
    "mean_rank": _mean_rank,
    "mean_z": _mean_z,
}
"""Aggregator name -> ``fn(scores, history, *, direction) -> float`` (see the module docstring)."""


def pair_metric(metrics: Mapping[str, Mapping[str, Mapping[str, Any]]], name: str) -> dict[str, float]:
    """Pull one ``"task.metric"`` out of ``{pair: {task: {metric: value}}}``.

    The trainer's own objective (the name ``"objective"``) is not per-pair metrics data; the
    caller reads it from the trainer's report.

    Args:
        metrics: Evaluation metrics as the trainer reports them.
        name: ``"task.metric"``, e.g. ``"da.pearson"``.

    Returns:
        ``{pair: value}`` for every pair of ``metrics``.

    Raises:
        ValueError: ``name`` is not ``task.metric``, or a pair lacks it (the message names the
            pair and lists the metrics it has).
    """
    task, dot, metric = name.partition(".")
    if not dot or not task or not metric:
        raise ValueError(f"metric name must be 'task.metric', e.g. 'da.pearson', got {name!r}")
    out = {}
    for pair, tasks in metrics.items():
        try:
            out[pair] = float(tasks[task][metric])
        except (KeyError, TypeError) as e:
            have = ", ".join(f"{t}.{m}" for t, ms in tasks.items() for m in (ms or {})) or "nothing"
            raise ValueError(f"pair {pair!r} has no metric {name!r}; it has: {have}") from e
    return out

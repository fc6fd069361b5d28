"""The zero-training floor: how well the NMT system's own ``model_scores`` already predict DA.

The MLQE-PE direct-assessment files carry the translating system's sentence score beside the
gold ``z_mean``; its Pearson with ``z_mean`` is what a QE model gets for free. It is computed
once per pair (:func:`mtl.evaluate.model_score_floor`) on the rows the trials were scored on:
the first ``data.max_eval_samples`` segments of ``data.eval_split``, read from the config of
the best complete trial that trains ``da``. Every complete config's recorded DA Pearson is
then compared with it. Pure data, no drawing; a study without ``da`` has no floor (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from reports.aggregate import Aggregation
from reports.extract import StudyData, TrialData

LABEL = "NMT model_scores (no training)"
"""How the page names the floor."""
FLOOR_TASK = "da"
"""The task the NMT model_scores predict (their gold is the DA z_mean)."""

__all__ = ["LABEL", "Floor", "floor", "verdict"]


@dataclass(frozen=True)
class Floor:
    """The floor per pair and the DA Pearson of every complete config."""

    pairs: list[str]
    """The study's pairs, in its order."""
    split: str
    max_samples: int | None
    """Rows scored: the first N segments of the split (None: all)."""
    root: str
    values: dict[str, float]
    """Pair -> the floor; a pair whose floor could not be computed is absent (see ``notes``)."""
    da: dict[int, dict[str, float]]
    """Complete trial -> pair -> its recorded DA Pearson (finite values only)."""
    source: int
    """The trial whose config named root, split and rows."""
    notes: list[str] = field(default_factory=list)
    """Why a floor is missing."""

    @property
    def rows(self) -> str:
        """The scored rows in words, e.g. ``the first 24 dev segments``."""
        return f"the first {self.max_samples} {self.split} segments" if self.max_samples else \
            f"every {self.split} segment"

    def margins(self, trial: int) -> dict[str, float]:
        """Pair -> the trial's DA Pearson minus the floor, where both are known, in pair order."""
        da = self.da.get(trial, {})
        return {p: da[p] - self.values[p] for p in self.pairs
                if p in da and math.isfinite(self.values.get(p, math.nan))}

    def worst(self, trial: int) -> tuple[str, float] | None:
        """The pair with the smallest margin and that margin; None when no margin is known."""
        m = self.margins(trial)
        return min(m.items(), key=lambda kv: kv[1]) if m else None

    def cleared(self, trial: int) -> list[str]:
        """The pairs on which the trial's DA Pearson is above the floor."""
        return [p for p, m in self.margins(trial).items() if m > 0]

    def clears(self, trial: int) -> bool:
        """Above the floor on every pair of the study."""
        return len(self.cleared(trial)) == len(self.pairs)


def floor(data: StudyData, agg: Aggregation, *, data_root: str | None = None) -> Floor | None:
    """The floor of each pair of a study, and every complete config's DA Pearson.

    Args:
        data: The extracted study.
        agg: Its aggregation (its ranking picks the trial whose config names the rows).
        data_root: MLQE-PE root (default: the trials' ``data.root``).

    Returns:
        The :class:`Floor`, with a note per pair whose floor could not be computed (e.g. the data
        root is not readable here); None when no complete trial trains ``da``.
    """
    from mtl.config_loader import ConfigError
    from mtl.data.parse import DataError

    order = agg.rankings.get(data.aggregator) or agg.rankings.get("mean") or []
    candidates = [data.trial(t) for t in order] + data.complete
    source = next((t for t in candidates if FLOOR_TASK in (t.config.get("tasks") or {})), None)
    if source is None:
        return None
    split, max_samples, root = _rows(source)
    root = str(data_root or root)
    values: dict[str, float] = {}
    failed: dict[str, list[str]] = {}  # one note per reason (a missing root fails every pair alike)
    from mtl.evaluate import model_score_floor  # imports torch: only when there is a floor to compute

    for pair in data.pairs:
        try:
            values[pair] = model_score_floor(source.data_source(pair, root=data_root), pair, split,
                                             max_samples=max_samples)
        except (DataError, ConfigError, OSError) as e:
            failed.setdefault(str(e), []).append(pair)
    hint = "" if data_root else " (pass --data if the MLQE-PE data lives elsewhere here)"
    notes = [f"{', '.join(pairs)}: no floor: {reason}{hint}" for reason, pairs in failed.items()]
    return Floor(pairs=list(data.pairs), split=split, max_samples=max_samples, root=root, values=values,
                 da={t.number: _da(t, data.pairs) for t in data.complete}, source=source.number, notes=notes)


def verdict(flr: Floor, trial: int) -> str:
    """The best config against the floor, in one sentence."""
    if not flr.values:
        return f"Best config vs floor: not computed: {'; '.join(flr.notes)}."
    margins, n, found = flr.margins(trial), len(flr.pairs), flr.worst(trial)
    if not margins or found is None:
        return f"Best config vs floor: trial {trial} has no DA Pearson on a pair with a floor."
    pair, worst = found
    below = [p for p, m in margins.items() if m <= 0]
    unknown = [p for p in flr.pairs if p not in margins]
    text = (f"Best config vs floor: clears it on {len(flr.cleared(trial))} of {n} pairs (worst margin {worst:+.3f} "
            f"on {pair}: DA Pearson {flr.da[trial][pair]:.3f} vs {flr.values[pair]:.3f}, {LABEL}, on {flr.rows})")
    if below:
        text += f"; not above it on {', '.join(below)}"
    if unknown:
        text += f"; unknown on {', '.join(unknown)}"
    return text + "."


def _rows(trial: TrialData) -> tuple[str, int | None, str]:
    """The eval split, its row limit and the data root a trial's config names (the trainer's defaults
    where it names none)."""
    from mtl.config import DataConfig

    data = trial.config.get("data") or {}
    split = str(data.get("eval_split", DataConfig.eval_split))
    return split, data.get("max_eval_samples", DataConfig.max_eval_samples), data.get("root", DataConfig.root)


def _da(trial: TrialData, pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        value = ((trial.metrics.get(pair) or {}).get(FLOOR_TASK) or {}).get("pearson")
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[pair] = float(value)
    return out

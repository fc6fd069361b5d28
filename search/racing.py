"""Pairs as instances: a trial stops once it is clearly worse than the incumbent on the pairs
scored so far (racing, as irace and Optuna's `WilcoxonPruner` do with problem instances).

The space turns it on with ``datasets: {mode: per_pair | joint, race: {rule, min_pairs, margin, p}}``.
The incumbent is the best COMPLETE trial when the trial started (`incumbent`).

- per_pair: the trial trains its pairs in the order ``datasets.pairs`` lists them, each with
  all the trial's resources, and after each pair compares its scores of the first objective
  with the incumbent's on the same pairs; a stopped trial never trains the rest. Each pair's
  result is also reported to the scheduler, so ASHA compares trials on the same first k pairs
  (training_iteration = pairs scored).
- joint: one model learns every pair at once, so every evaluation scores all of them; after
  each evaluation the trial compares its per-pair scores with the incumbent's at the same step
  (the incumbent's ``pair_curve``) and stops training when the rule says so. A step at which
  the incumbent was not evaluated (``train.eval_every`` searched) gives no verdict.

Rules (one row each in :data:`RULES`):

- ``sign``: stop when on every one of k >= ``min_pairs`` pairs the trial is worse than the
  incumbent by more than ``margin`` (in the metric's units and direction).
- ``wilcoxon``: stop when the one-sided exact Wilcoxon signed-rank test of the k differences
  gives p < ``p``. With k pairs its smallest possible p is 2^-k (k = 3: 0.125), so with the 3
  or 4 pairs of a QE study it can rarely fire; the space check refuses a ``p`` it never reaches.

A stopped trial is PRUNED with ``pruned_reason`` (and per_pair ``pairs_scored``); its missing
pairs are missing (the reports rank only configs scored on every pair), never zeros.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

__all__ = ["RULES", "Race", "incumbent", "race_problems"]


def _sign(diffs: list[float], race: Race) -> str | None:
    if all(d < -race.margin for d in diffs):
        return (f"worse by more than {race.margin:g} on " +
                ("the 1 pair scored" if len(diffs) == 1 else f"all {len(diffs)} pairs scored"))
    return None


def _wilcoxon(diffs: list[float], race: Race) -> str | None:
    from scipy.stats import wilcoxon

    finite = [d if math.isfinite(d) else -1e9 for d in diffs]  # an undefined score ranks last
    if all(d == 0 for d in finite):
        return None
    p = float(wilcoxon(finite, alternative="less", method="exact").pvalue)
    return f"worse on the {len(diffs)} pairs scored (one-sided Wilcoxon p = {p:.3g} < {race.p:g})" if p < race.p \
        else None


@dataclass(frozen=True)
class Rule:
    """One racing rule: whether the differences (trial - incumbent, oriented so that < 0 is
    worse) stop the trial, and why."""

    stops: Callable[[list[float], Race], str | None]
    doc: str


RULES: dict[str, Rule] = {
    "sign": Rule(_sign, "every pair scored worse than the incumbent by more than margin"),
    "wilcoxon": Rule(_wilcoxon, "one-sided exact Wilcoxon signed-rank test, p < p (smallest possible: 2^-pairs)"),
}
"""Racing rule name -> its row."""
OPTIONS = ("rule", "min_pairs", "margin", "p")


@dataclass(frozen=True)
class Race:
    """A space's ``datasets.race`` block."""

    rule: str = "sign"
    min_pairs: int = 2
    """Pairs scored before the rule may stop a trial (a space's default: 2, or 1 with 2 pairs)."""
    margin: float = 0.01
    """sign: how much worse than the incumbent on every pair."""
    p: float = 0.1
    """wilcoxon: the p-value under which the trial stops."""

    def verdict(self, scores: Mapping[str, float], best: Mapping[str, float], *, maximize: bool) -> str | None:
        """Why the trial stops now (its ``scores`` on the pairs so far against the incumbent's
        ``best``), or None to go on."""
        pairs = [p for p in scores if p in best]
        if len(pairs) < self.min_pairs:
            return None
        sign = 1.0 if maximize else -1.0
        diffs = [sign * (scores[p] - best[p]) if math.isfinite(scores[p]) else -math.inf for p in pairs]
        return RULES[self.rule].stops(diffs, self)


def race_problems(raw: Any, *, pairs: int, mode: str) -> tuple[Race | None, list[tuple[str, str]]]:
    """Read ``datasets.race``: the race, and [(key, message)] problems."""
    if raw is None:
        return None, []
    if raw is True:
        raw = {}
    if not isinstance(raw, Mapping):
        return None, [("datasets.race", f"must be a mapping {{rule: {' | '.join(RULES)}, min_pairs, margin, p}}, "
                                        f"got {raw!r}")]
    problems = [(f"datasets.race.{k}", f"unknown key; valid: {', '.join(OPTIONS)}") for k in raw if k not in OPTIONS]
    rule = raw.get("rule", "sign")
    if rule not in RULES:
        problems.append(("datasets.race.rule", f"unknown rule {rule!r}; valid: {', '.join(RULES)}"))
    if pairs < 2:
        problems.append(("datasets.race", f"needs at least 2 pairs to race over, got {pairs}"))
    if mode == "joint" and "min_pairs" in raw:
        problems.append(("datasets.race.min_pairs", "is for mode: per_pair; a joint trial scores all its pairs "
                                                    "at every evaluation"))
    min_pairs = raw.get("min_pairs", max(1, min(2, pairs - 1)))  # default 2, or 1 with 2 pairs
    if isinstance(min_pairs, bool) or not isinstance(min_pairs, int) or not 1 <= min_pairs <= max(1, pairs - 1):
        problems.append(("datasets.race.min_pairs", f"must be an integer from 1 to {max(1, pairs - 1)} (a trial "
                                                    f"scored on all {pairs} pairs is done), got {min_pairs!r}"))
    margin, p = raw.get("margin", 0.01), raw.get("p", 0.1)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        problems.append(("datasets.race.margin", f"must be a number >= 0 (metric units), got {margin!r}"))
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p < 1:
        problems.append(("datasets.race.p", f"must be a number in (0, 1), got {p!r}"))
    elif rule == "wilcoxon" and pairs >= 2 and p <= 2.0 ** -(k := pairs if mode == "joint" else pairs - 1):
        seen = f"scored on its {pairs} pairs" if mode == "joint" else f"stopped after at most {k} of its {pairs} pairs"
        problems.append(("datasets.race.p", f"{p:g} can never be reached: a trial is {seen}, and the smallest "
                                            f"one-sided Wilcoxon p-value of {k} pairs is 2^-{k} = {2.0 ** -k:g}; "
                                            f"use p > {2.0 ** -k:g} or rule: sign"))
    if problems:
        return None, problems
    return Race(rule=str(rule), min_pairs=int(min_pairs), margin=float(margin), p=float(p)), []


def incumbent(study: optuna.Study, metric: str) -> dict[str, Any] | None:
    """The best COMPLETE trial's number, per-pair scores of ``metric`` (the first objective)
    and, from a joint race, its ``curve`` (step -> per-pair scores at each evaluation); None
    before any trial completed."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and math.isfinite(t.values[0]) and metric in (t.user_attrs.get("pair_scores") or {})]
    if not done:
        return None
    maximize = study.directions[0].name == "MAXIMIZE"
    best = max(done, key=lambda t: t.values[0] if maximize else -t.values[0])
    curve = best.user_attrs.get("pair_curve")  # JSON text: Ray flattens a nested dict in a result
    return {"trial": best.number, "scores": dict(best.user_attrs["pair_scores"][metric]),
            "curve": json.loads(curve) if curve else {}}

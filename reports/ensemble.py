"""Average the top-k configs' dev predictions per pair, and see whether that beats the best one.

Sentence-level tasks only (da, hter): per pair and task, the members' predictions are
averaged segment by segment (on the segments every member predicted and that have a gold
label) and scored with :func:`mtl.metrics.sentence_metrics`, beside each member's own score
on the same segments.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from mtl.catalogue import SENTENCE_TASKS
from mtl.files import write_json
from reports.aggregate import Aggregation
from reports.bootstrap import align_predictions
from reports.extract import ReportError, StudyData

__all__ = ["Ensemble", "ensemble", "write_ensemble"]


@dataclass(frozen=True)
class Ensemble:
    """The ensemble of the top configs against its best member, per pair and task."""

    members: list[int]
    """Trials averaged, best first by the ranking used."""
    method: str
    split: str
    scores: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    """Pair -> task -> ``"ensemble"`` or ``"trial <n>"`` -> metrics."""
    beats_best: dict[str, dict[str, bool]] = field(default_factory=dict)
    """Pair -> task -> whether the ensemble's Pearson beats every member's."""
    notes: list[str] = field(default_factory=list)


def ensemble(data: StudyData, agg: Aggregation, *, top: int = 3, method: str | None = None,
             data_root: str | None = None) -> Ensemble:
    """Average the dev predictions of the ``top`` best configs.

    Args:
        data: The extracted study.
        agg: Its aggregation (the ranking picks the members).
        top: How many configs to average (at least 2).
        method: Ranking method (default: the study's aggregator).
        data_root: MLQE-PE root for the gold labels (default: each trial's ``data.root``).

    Returns:
        The :class:`Ensemble`.

    Raises:
        ReportError: ``top`` below 2, or fewer than 2 complete configs.
    """
    from mtl.metrics import sentence_metrics

    if top < 2:
        raise ReportError(f"--top must be at least 2 to make an ensemble, got {top}")
    method = method or data.aggregator
    order = agg.rankings.get(method) or []
    if len(order) < 2:
        raise ReportError(f"study {data.name!r} has {len(order)} complete config(s) with every pair scored: "
                          f"an ensemble needs at least 2")
    members = [data.trial(t) for t in order[:top]]
    split = str(members[0].config.get("data", {}).get("eval_split", "dev"))
    out = Ensemble(members=[t.number for t in members], method=method, split=split)
    tasks = [t for t in SENTENCE_TASKS if t in (members[0].config.get("tasks") or {})]
    if not tasks:
        out.notes.append(f"no sentence-level task ({', '.join(SENTENCE_TASKS)}) among the members' tasks")
    for pair in data.pairs:
        for task in tasks:
            aligned = align_predictions(members, pair, task, split, data_root, out.notes)
            if aligned is None:
                continue
            gold, preds = aligned
            mean = np.mean(np.stack([preds[t.number] for t in members]), axis=0)
            row = {"ensemble": sentence_metrics(mean.tolist(), gold.tolist())}
            row.update({f"trial {t}": sentence_metrics(p.tolist(), gold.tolist()) for t, p in preds.items()})
            out.scores.setdefault(pair, {})[task] = row
            best = max(v["pearson"] for k, v in row.items() if k != "ensemble")
            out.beats_best.setdefault(pair, {})[task] = bool(row["ensemble"]["pearson"] > best)
    return out


def summary(ens: Ensemble) -> list[str]:
    """The ensemble's result in words, one sentence per pair and task."""
    lines = []
    for pair, tasks in ens.scores.items():
        for task, row in tasks.items():
            best_key = max((k for k in row if k != "ensemble"), key=lambda k: row[k]["pearson"])
            e, b = row["ensemble"]["pearson"], row[best_key]["pearson"]
            verb = "beats" if ens.beats_best[pair][task] else "does not beat"
            lines.append(f"{pair} {task}: the average of trials {', '.join(map(str, ens.members))} {verb} the best "
                         f"single config ({best_key}): Pearson {e:.4f} vs {b:.4f}.")
    return lines


def write_ensemble(ens: Ensemble, path: str | Path) -> Path:
    """Write the ensemble's result, with its summary in words, as JSON."""
    path = Path(path)
    if path.is_dir():
        raise ReportError(f"--out {path}: is a folder, expected the JSON file to write (e.g. {path / 'ensemble.json'})")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {**asdict(ens), "summary": summary(ens)})
    return path

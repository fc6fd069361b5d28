"""An ensemble of trained runs: what `mtl evaluate` and `mtl predict` load from an ensemble folder.

Each member predicts with its own tokenizer and config; each head combines its members'
per-segment outputs (`Head.combine`: sentence scores and words' P(BAD) averaged with the
task's weights, tags re-decided from the averaged P(BAD), the best member's post-edit). A plain
run is an ensemble of one. The weights of a task are the plain mean, or the weights greedy
ensemble selection (Caruana et al., 2004) picks on one half of dev when they beat the plain mean
on the other half (:func:`choose_weights`).

An ensemble folder (`mtl.rundir.RunDir.ensemble`)::

    ensemble.json    members (run directories, relative to this folder), weights per task, how
                     they were chosen
    metrics.json     the ensemble's dev metrics, like a run's
    predictions/<pair>.<split>/   the ensemble's dev predictions in the WMT20 layout
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl.catalogue import TASKS
from mtl.data.dataset import PairSplit
from mtl.files import write_json
from mtl.model.checkpoints import CheckpointError
from mtl.model.heads.base import Head
from mtl.model.multitask import MultiTaskModel
from mtl.rundir import RunDir

__all__ = ["Ensemble", "as_ensemble", "choose_weights", "load_run", "write_ensemble"]

ROUNDS = 10
"""Greedy selection rounds per task (each adds one member, with replacement)."""


@dataclass
class Ensemble:
    """Members (best-ranked first) and, per task, one weight per member (0: it lacks the task)."""

    members: list[MultiTaskModel]
    weights: dict[str, list[float]]

    @classmethod
    def of(cls, members: Sequence[MultiTaskModel]) -> Ensemble:
        """The plain mean of ``members``."""
        tasks = {task for m in members for task in m.heads}
        weights = {task: [1.0 if task in m.heads else 0.0 for m in members] for task in tasks}
        return cls(list(members), weights)

    @property
    def cfg(self) -> Any:
        """The best-ranked member's config (data, objective and evaluation settings)."""
        return self.members[0].cfg

    @property
    def heads(self) -> dict[str, Head]:
        """One head per task with per-segment outputs (`Task.level`), from the first member that has it."""
        out: dict[str, Head] = {}
        for member in self.members:
            for task, head in member.task_heads.items():
                if task not in out and TASKS[task].level != "none":
                    out[task] = head
        return out

    def to(self, device: Any) -> Ensemble:
        for member in self.members:
            member.to(device).eval()
        return self

    def combine(self, member_rows: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
        """Per segment, every head's combined outputs (one member: its own rows)."""
        if len(self.members) == 1:
            return member_rows[0]
        out: list[dict[str, Any]] = [{} for _ in member_rows[0]]
        for task, head in self.heads.items():
            found = head.combine(*_members_of(self, task, member_rows, self.weights[task]))
            for row, values in zip(out, found or ()):
                row.update(values)
        return out


def _members_of(ens: Ensemble, task: str, member_rows: list[list[dict[str, Any]]],
                weights: list[float]) -> tuple[list[list[dict[str, Any]]], list[float]]:
    """The rows and normalised weights of the members that have ``task`` and a weight above 0."""
    keep = [i for i, m in enumerate(ens.members) if task in m.heads and weights[i] > 0]
    total = sum(weights[i] for i in keep)
    return [member_rows[i] for i in keep], [weights[i] / total for i in keep]


def as_ensemble(model: MultiTaskModel | Ensemble) -> Ensemble:
    return model if isinstance(model, Ensemble) else Ensemble.of([model])


def load_run(path: str | Path) -> Ensemble:
    """A run directory (an ensemble of one) or an ensemble folder, loaded.

    Raises:
        CheckpointError: Neither, or a member that does not load (the message names it).
    """
    run = RunDir(path)
    if not run.path.is_dir():
        raise CheckpointError(f"--run {run.path}: no such folder; expected a run directory written by `mtl train` "
                              f"or an ensemble folder written by finalize")
    if run.ensemble.is_file():
        try:
            spec = json.loads(run.ensemble.read_text(encoding="utf-8"))
            members, weights = [str(m) for m in spec["members"]], spec["weights"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{run.ensemble}: not an ensemble file ({e}); rerun finalize to write it") from e
        models = [load_run(run.path / m).members[0] for m in members]
        ens = Ensemble.of(models)
        for task, values in weights.items():
            if task not in ens.weights or len(values) != len(models):
                raise CheckpointError(f"{run.ensemble}: weights of {task!r} do not match its {len(models)} members")
            ens.weights[task] = [float(v) for v in values]
        return ens
    if not run.checkpoint.is_dir():
        raise CheckpointError(f"--run {run.path}: no checkpoint/ folder; is this a run directory written by "
                              f"`mtl train` (a run that evaluated at least once)?")
    return Ensemble.of([MultiTaskModel.from_pretrained(run.checkpoint)])


# --- weights chosen on dev ----------------------------------------------------------------


Dev = list[tuple[PairSplit, list[list[dict[str, Any]]]]]
"""Per dataset: its split (the first member's encoding) and every member's output rows."""


def choose_weights(ens: Ensemble, dev: Dev, *, seed: int = 0, rounds: int = ROUNDS) -> dict[str, dict[str, Any]]:
    """Per task, greedy selection's weights or the plain mean, whichever scores better on a
    held-out half of dev; sets ``ens.weights`` and returns what was compared.

    Each dataset's dev rows are shuffled (``seed``) and halved: selection adds, ``rounds``
    times, the member (with replacement) that most improves the task's primary metric averaged
    over the datasets' first halves; the weights are its counts. They replace the plain mean
    only when they score better on the second halves.
    """
    report: dict[str, dict[str, Any]] = {}
    rng = random.Random(seed)
    halves = []
    for split, _ in dev:
        order = list(range(len(split)))
        rng.shuffle(order)
        halves.append((sorted(order[:len(order) // 2]), sorted(order[len(order) // 2:])))
    for task, head in ens.heads.items():
        row, primary = TASKS[task], TASKS[task].primary
        have = [i for i, m in enumerate(ens.members) if task in m.heads]
        if primary is None or len(have) < 2:
            continue
        sign = 1.0 if row.metrics[primary] == "maximize" else -1.0

        def value(weights: list[float], half: int, task: str = task, head: Head = head, sign: float = sign,
                  primary: str = primary) -> float:
            scores = []
            for (split, rows), rows_of in zip(dev, halves):
                keep = rows_of[half]
                sub = PairSplit(split.pair, split.split, {k: [v[i] for i in keep] for k, v in split.columns.items()},
                                dataset=None)
                found = head.combine(*_members_of(ens, task, [[r[i] for i in keep] for r in rows], weights))
                metrics = head.score(sub, head.from_outputs(found or []))
                scores.append(sign * metrics[primary] if metrics else math.nan)
            mean = sum(scores) / len(scores) if scores else math.nan
            return -math.inf if math.isnan(mean) else mean

        counts = [0] * len(ens.members)
        for _ in range(rounds):
            def trial(j: int, counts: list[int] = counts) -> float:
                return value([c + (k == j) for k, c in enumerate(counts)], 0)
            counts[max(have, key=trial)] += 1  # ties: the better-ranked member
        total = sum(counts)
        selected = [c / total for c in counts]
        plain = [1.0 / len(have) if i in have else 0.0 for i in range(len(ens.members))]
        held_plain, held_selected = value(plain, 1), value(selected, 1)
        chosen = selected if held_selected > held_plain else plain
        ens.weights[task] = chosen
        report[task] = {"metric": f"{task}.{primary}", "held_out_plain": sign * held_plain,
                        "held_out_selected": sign * held_selected, "selected_weights": selected,
                        "chosen": "selected" if chosen is selected else "plain"}
    return report


def write_ensemble(folder: str | Path, ens: Ensemble, member_dirs: Sequence[str | Path], *,
                   choice: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """Write ``ensemble.json`` and ``metrics.json`` of an ensemble folder (each whole or not at all)."""
    run = RunDir(folder)
    run.path.mkdir(parents=True, exist_ok=True)
    members = [os.path.relpath(Path(m).resolve(), run.path.resolve()) for m in member_dirs]
    write_json(run.ensemble, {"members": members, "weights": ens.weights, "choice": choice})
    write_json(run.metrics, metrics)
    return run.path

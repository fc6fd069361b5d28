"""What finalizing bought: the report's "Final models" section, from the study's ``finalized``
record (written by `search.finalize`) and the run directories it names.

Per dataset and task (its primary metric), all on the same dev segments: each finalized config's
members (mean and spread over seeds), the ensemble, and whether the ensemble beats the best
single member (paired bootstrap on the sentence tasks). Per sentence task, each config's
slice-trained trial against its full-data members on the segments the trial was scored on
(what the slice cost). And the rank correlation between the configs' search scores and their
finalized objectives (how much of the search's ranking held).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from mtl.catalogue import TASKS
from mtl.rundir import RunDir
from reports.bootstrap import bootstrap, paired_p, read_predictions

__all__ = ["Finalized", "finalized"]


@dataclass(frozen=True)
class Finalized:
    """One finalize run of the study, as the report shows it."""

    out: str
    ensemble: str
    objective: float | None
    configs: list[dict[str, Any]]
    """Per config, best-ranked first: rank, trial, search score, seeds, the members' objectives
    and ``metrics`` (``{pair: {task.metric: [value per seed]}}``)."""
    ens_metrics: dict[str, dict[str, float]]
    """Pair -> task.metric -> the ensemble's value."""
    verdicts: list[str] = field(default_factory=list)
    """In words: the ensemble against its best member, the slice against all the data."""
    rank_correlation: float | None = None
    """Spearman's rho between the configs' search scores and their finalized objectives (mean over seeds)."""
    notes: list[str] = field(default_factory=list)


def finalized(study: optuna.Study, *, data_root: str | None = None, n_boot: int = 1000,
              seed: int = 0) -> Finalized | None:
    """The study's most recent finalize run (None: it has none, or its folder is gone)."""
    record = study.user_attrs.get("finalized") or {}
    if not record:
        return None
    out, entry = list(record.items())[-1]
    ens = RunDir(entry["ensemble"]["run"])
    saved = ens.read_json("metrics.json")
    if saved is None:
        return None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    members = entry["members"]
    keys = {pair: [f"{task}.{TASKS[task].primary}" for task in tasks if TASKS[task].primary in tasks[task]]
            for pair, tasks in saved["metrics"].items()}
    configs: dict[int, dict[str, Any]] = {}
    for name, m in members.items():
        row = configs.setdefault(m["rank"], {"rank": m["rank"], "trial": m["trial"], "seeds": [], "objectives": [],
                                             "metrics": {}, "members": [],
                                             "search": _value(trials.get(m["trial"]))})
        scored = (saved.get("members") or {}).get(name) or {}
        row["seeds"].append(m["seed"])
        row["members"].append(name)
        row["objectives"].append(scored.get("objective"))
        for pair, ks in keys.items():
            for key in ks:
                task, metric = key.split(".")
                value = (((scored.get("metrics") or {}).get(pair) or {}).get(task) or {}).get(metric)
                row["metrics"].setdefault(pair, {}).setdefault(key, []).append(value)
    ordered = [configs[r] for r in sorted(configs)]
    ens_metrics = {pair: {k: saved["metrics"][pair][k.split(".")[0]][k.split(".")[1]] for k in ks}
                   for pair, ks in keys.items()}
    result = Finalized(out=out, ensemble=str(ens.path), objective=saved.get("objective"), configs=ordered,
                       ens_metrics=ens_metrics, rank_correlation=_rho(ordered))
    member_dirs = {name: Path(out) / "members" / name for name in members}
    for pair, ks in keys.items():
        for key in ks:
            task = key.split(".")[0]
            if TASKS[task].level == "sentence":  # every member read the same datasets: one member's gold
                gold = _gold(next(iter(member_dirs.values())), pair, task, data_root)
                _versus_best(result, pair, key, member_dirs, gold, n_boot, seed)
                _versus_slice(result, pair, key, member_dirs, trials, gold)
    return result


def _value(trial: optuna.trial.FrozenTrial | None) -> float | None:
    return float(trial.values[0]) if trial is not None and trial.values else None


def _rho(configs: list[dict[str, Any]]) -> float | None:
    pairs = [(c["search"], statistics.mean(v for v in c["objectives"] if v is not None)) for c in configs
             if c["search"] is not None and any(v is not None for v in c["objectives"])]
    if len(pairs) < 3:
        return None
    from scipy.stats import spearmanr

    rho = float(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return rho if math.isfinite(rho) else None


def _gold(member: Path, pair: str, task: str, data_root: str | None) -> dict[int, float]:
    from mtl.config import load_config

    cfg = load_config(RunDir(member).config)
    rows = cfg.data.source(pair, root=data_root).read(pair, cfg.data.eval_split)
    return {r["index"]: float(r[task]) for r in rows if r.get(task) is not None}


def _aligned(paths: dict[str, Path], gold: dict[int, float], first: int | None = None
             ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    preds = {}
    for name, path in paths.items():
        if not path.is_file():
            return None
        preds[name] = read_predictions(path)
    common = sorted(set(gold).intersection(*(set(p) for p in preds.values())))
    common = [i for i in common if first is None or i < first]
    if len(common) < 3:
        return None
    return (np.array([gold[i] for i in common]),
            {name: np.array([p[i] for i in common]) for name, p in preds.items()})


def _versus_best(result: Finalized, pair: str, key: str, member_dirs: dict[str, Path], gold: dict[int, float],
                 n_boot: int, seed: int) -> None:
    """The ensemble against the member with the best value of ``key`` on this pair, paired bootstrap."""
    task, metric = key.split(".")
    values = {name: v for c in result.configs for name, v in zip(c["members"], c["metrics"][pair][key])
              if v is not None}
    if not values:
        return
    better = TASKS[task].metrics[metric] == "maximize"
    best = (max if better else min)(values, key=values.__getitem__)
    paths = {"ensemble": RunDir(result.ensemble).prediction(pair, "dev", task),
             best: RunDir(member_dirs[best]).prediction(pair, "dev", task)}
    aligned = _aligned(paths, gold)
    if aligned is None:
        result.notes.append(f"{pair} {task}: no predictions to compare the ensemble with {best}")
        return
    y, preds = aligned
    samples = bootstrap({0: preds["ensemble"], 1: preds[best]}, y, metric=metric, n=n_boot, seed=seed)
    p = paired_p(samples[0], samples[1], higher_is_better=better)
    e = result.ens_metrics[pair][key]
    word = "beats" if (e > values[best] if better else e < values[best]) else "does not beat"
    sure = "clearly" if p < 0.05 else "but not clearly" if word == "beats" else ""
    result.verdicts.append(f"{pair} {key}: the ensemble {word} the best single member {best} ({e:.4f} vs "
                           f"{values[best]:.4f}{'; ' + sure if sure else ''}: it is not better on "
                           f"{p:.0%} of {n_boot} resamples of the {len(y)} segments).")


def _versus_slice(result: Finalized, pair: str, key: str, member_dirs: dict[str, Path],
                  trials: dict[int, optuna.trial.FrozenTrial], gold: dict[int, float]) -> None:
    """Each config's slice-trained trial against its members, on the segments the trial was scored on."""
    from mtl.metrics import sentence_metrics

    task, metric = key.split(".")
    for c in result.configs:
        trial = trials.get(c["trial"])
        if trial is None:
            continue
        slice_value = (((trial.user_attrs.get("metrics") or {}).get(pair) or {}).get(task) or {}).get(metric)
        configs: dict[str, Any] = (trial.user_attrs.get("config") or {}).get("configs") or {}
        stored: dict[str, Any] = next(iter(configs.values()), {})
        first = (stored.get("data") or {}).get("max_eval_samples")
        if slice_value is None:
            continue
        full = []
        for name in c["members"]:
            aligned = _aligned({name: RunDir(member_dirs[name]).prediction(pair, "dev", task)}, gold, first)
            if aligned is not None:
                y, preds = aligned
                full.append(sentence_metrics(preds[name].tolist(), y.tolist())[metric])
        if full:
            result.verdicts.append(
                f"{pair} {key}, trial {c['trial']}: {slice_value:.4f} trained on the search's slice, "
                f"{statistics.mean(full):.4f} retrained on all the data "
                f"({'mean of ' + str(len(full)) + ' seeds' if len(full) > 1 else 'one seed'}), on the same "
                f"{'first ' + str(first) if first else 'all'} dev segments.")


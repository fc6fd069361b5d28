"""Synthetic studies for the report tests: trials added with known per-pair scores, and tiny
fake prediction files in temporary run directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from mtl.rundir import RunDir
from reports.record import JOINT, TrialConfigs
from tests.conftest import tiny_raw

PAIRS = ["en-de", "ro-en", "et-en"]
DISTS = {"train.lr": FloatDistribution(1e-4, 1e-1, log=True),
         "weighting": CategoricalDistribution(["fixed", "uncertainty"])}


def config(data_root: Path, cache_dir: Path, *, lr: float, weighting: str = "fixed",
           weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
           tasks: tuple[str, str, str] = ("da", "hter", "word_tags")) -> dict[str, Any]:
    """A tiny trainer config with three tasks (default da, hter, word_tags) and their loss weights."""
    raw = tiny_raw(data_root, cache_dir, train={"lr": lr})
    raw["tasks"] = {task: {"weight": w} for task, w in zip(tasks, weights)}
    raw["weighting"] = weighting
    raw["data"]["pairs"] = list(PAIRS)
    return raw


def new_study(tmp_path: Path, *, name: str = "synth", metrics: list[str] | None = None,
              directions: list[str] | None = None, aggregator: str = "mean",
              pairs: list[str] | None = None) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'synth.db'}", study_name=name,
                                directions=directions or ["maximize"])
    study.set_user_attr("metrics", metrics or ["da.pearson"])
    study.set_user_attr("aggregator", aggregator)
    study.set_user_attr("pairs", pairs or list(PAIRS))
    study.set_user_attr("mode", "joint")
    study.set_user_attr("space_file", "spaces/synthetic.yaml")
    return study


def add(study: optuna.Study, *, state: TrialState = TrialState.COMPLETE, values: list[float] | None = None,
        scores: dict[str, float] | None = None, cfg: dict[str, Any], run_dir: Path | None = None,
        curve: dict[int, float] | None = None, metric: str = "da.pearson", **attrs: Any) -> None:
    """Add one finished trial whose per-pair ``metric`` is ``scores`` (its task's pearson and an mae of .5)."""
    scores = scores or {}
    task = metric.split(".")[0]
    user_attrs = {"values": {"train.lr": cfg["train"]["lr"]}, "config": TrialConfigs("joint", {JOINT: cfg}).to_attr(),
                  "run_dir": str(run_dir) if run_dir else None, "step": 8, "seconds": 12.5,
                  "metrics": {p: {task: {"pearson": v, "mae": 0.5}} for p, v in scores.items()},
                  "pair_scores": {metric: scores}, **attrs}
    study.add_trial(optuna.trial.create_trial(
        state=state, values=values if state == TrialState.COMPLETE else None,
        params={"train.lr": cfg["train"]["lr"], "weighting": cfg["weighting"]}, distributions=DISTS,
        user_attrs=user_attrs, intermediate_values=curve or {}))


def write_preds(run_dir: Path, pair: str, task: str, values: np.ndarray, *, start: int = 0) -> None:
    """A sentence-level prediction file as the trainer writes it."""
    path = RunDir(run_dir).prediction(pair, "dev", task)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{pair}\tmtl\t{start + i}\t{v:.6f}" for i, v in enumerate(values)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_history(run_dir: Path, weights: dict[str, float]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = [{"step": 1, "loss": {}, "weight": {k: 1.0 for k in weights}}, {"step": 2, "loss": {}, "weight": weights}]
    RunDir(run_dir).history.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")

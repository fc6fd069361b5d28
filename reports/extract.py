"""From an Optuna study to plain data: one record per trial and a tidy metrics table.

Pure reading, no drawing: imports neither torch, ray nor plotly. Besides the study it reads
each trial's ``history.jsonl`` (the loss weights a learned strategy ended with, and the
learning curve of a multi-objective study, which keeps no intermediate values).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from mtl.errors import MtlError
from mtl.rundir import RunDir
from reports.record import TrialConfigs

if TYPE_CHECKING:
    from mtl.data.sources import DataSource

log = logging.getLogger(__name__)

__all__ = ["ReportError", "Row", "StudyData", "TrialData", "extract", "open_study"]


class ReportError(MtlError, ValueError):
    """A user-facing problem: no such study, no trial to report, a rank out of range."""


@dataclass(frozen=True)
class Row:
    """One line of the tidy table: one metric of one pair of one trial."""

    trial: int
    state: str
    pair: str
    task: str
    metric: str
    value: float
    step: int | None
    seconds: float | None
    params: Mapping[str, Any]
    weights: Mapping[str, float]
    """Task loss weights in force: the fixed ones, or those a learned strategy ended with."""


@dataclass(frozen=True)
class TrialData:
    """What the report needs of one trial."""

    number: int
    state: str
    """COMPLETE, PRUNED, FAIL, RUNNING or WAITING; an interrupted trial is FAIL with ``interrupted``."""
    values: tuple[float, ...] | None
    params: dict[str, Any]
    config: dict[str, Any]
    """The complete trainer config; per_pair studies: the first pair's (they differ only in data.pairs)."""
    configs: TrialConfigs | None
    """Its configs and mode (None: it stored none, e.g. it failed before)."""
    run_dir: str | None
    metrics: dict[str, dict[str, dict[str, float]]]
    pair_scores: dict[str, dict[str, float]]
    step: int | None
    seconds: float | None
    weighting: str
    weights: dict[str, float]
    """Task loss weights in force: the fixed ones, or those a learned strategy ended with."""
    curve: dict[int, float]
    """Objective per evaluated step (intermediate values, else the history's objective)."""
    fail_reason: str | None = None
    interrupted: bool = False
    retry_of: int | None = None

    def data_source(self, pair: str, root: str | None = None) -> DataSource:
        """Where the trial read a pair (dataset) from: its config's ``data`` section asked, the
        trainer's defaults where the config names nothing (``root``: MLQE-PE from there instead).

        Raises:
            ConfigError: The stored data section does not load (a study of an incompatible version).
        """
        from mtl.config import DataConfig
        from mtl.config_loader import build

        data = build(DataConfig, self.config.get("data") or {}, source=f"trial {self.number}'s config", path="data")
        return data.source(pair, root=root)


@dataclass(frozen=True)
class StudyData:
    """A study as plain data: its settings, its trials, the tidy table and importances."""

    name: str
    metric_names: list[str]
    directions: list[str]
    """``maximize`` / ``minimize`` per objective."""
    aggregator: str
    pairs: list[str]
    mode: str
    space_file: str | None
    trials: list[TrialData]
    rows: list[Row]
    importances: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per objective, parameter -> importance (Optuna's fANOVA evaluator); empty when undefined."""
    importance_note: str | None = None
    train_samples: list[str] = field(default_factory=list)
    """The data-size rungs of a fidelity study (its curves are per rung, not per step); empty otherwise."""

    @property
    def complete(self) -> list[TrialData]:
        """The COMPLETE trials, in trial order."""
        return [t for t in self.trials if t.state == "COMPLETE"]

    def trial(self, number: int) -> TrialData:
        """The trial numbered ``number``."""
        return next(t for t in self.trials if t.number == number)


def open_study(storage: str, study: str | None) -> optuna.Study:
    """Load a study without ever creating a database or a study.

    Args:
        storage: SQLAlchemy URL of the Optuna storage.
        study: The study name; None when the storage holds exactly one.

    Raises:
        ReportError: The SQLite file does not exist, the study is not there (the message
            lists the ones that are), or no name was given and there are several.
        SetupError: The database cannot be read (a bad URL, no driver, another Optuna schema).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from reports.storage import parse_url, storage_error

    url = parse_url(storage)
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if sqlite_file and not Path(str(url.database)).is_file():
            raise ReportError(f"--storage {storage}: no such SQLite file: {url.database}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        if study is None:
            if len(names) != 1:
                raise ReportError(f"--storage {storage} holds {len(names)} studies: pass --study, one of: "
                                  f"{', '.join(names) or 'none'}")
            study = names[0]
        if study not in names:
            raise ReportError(f"--study {study!r} is not in {storage}; it holds: {', '.join(names) or 'no study'}")
        return optuna.load_study(study_name=study, storage=storage)
    except (SQLAlchemyError, optuna.exceptions.StorageInternalError, RuntimeError, ImportError) as e:
        raise storage_error(storage, e) from e


def extract(study: optuna.Study, *, importances: bool = True) -> StudyData:
    """Read a study into :class:`StudyData`.

    Args:
        study: A loaded Optuna study written by ``search``.
        importances: Compute the parameter importances (fANOVA; a second or so).

    Returns:
        The study's settings, one :class:`TrialData` per trial, and the tidy table.
    """
    attrs = study.user_attrs
    directions = [d.name.lower() for d in study.directions]
    names = list(attrs.get("metrics") or [f"objective{i}" if i else "objective" for i in range(len(directions))])
    trials = [_trial(t, attrs.get("mode")) for t in study.get_trials(deepcopy=False)]
    pairs = list(attrs.get("pairs") or sorted({p for t in trials for p in t.metrics}))
    rows = [Row(trial=t.number, state=t.state, pair=pair, task=task, metric=metric, value=float(v), step=t.step,
                seconds=t.seconds, params=t.params, weights=t.weights)
            for t in trials for pair, tasks in t.metrics.items() for task, ms in tasks.items()
            for metric, v in (ms or {}).items() if isinstance(v, (int, float))]
    imp, note = _importances(study, names) if importances else ({}, "not computed")
    return StudyData(name=study.study_name, metric_names=names, directions=directions,
                     aggregator=attrs.get("aggregator", "mean"), pairs=pairs, mode=attrs.get("mode", "joint"),
                     space_file=attrs.get("space_file"), trials=trials, rows=rows, importances=imp,
                     importance_note=note, train_samples=[str(x) for x in attrs.get("train_samples") or []])


def _trial(t: FrozenTrial, study_mode: str | None) -> TrialData:
    ua = t.user_attrs
    configs = TrialConfigs.from_attr(ua.get("config"), study_mode=study_mode)
    config = configs.first if configs else {}
    run_dir = ua.get("run_dir")
    runs = list(configs.run_dirs(run_dir).values()) if configs and run_dir else []
    weighting = str(config.get("weighting", "fixed"))
    weights = _weights(config, runs)
    curve = {int(k): float(v) for k, v in t.intermediate_values.items()} or _history_curve(runs)
    return TrialData(number=t.number, state=t.state.name, values=tuple(t.values) if t.values else None,
                     params=dict(t.params), config=config, configs=configs, run_dir=run_dir,
                     metrics=ua.get("metrics") or {}, pair_scores=ua.get("pair_scores") or {},
                     step=ua.get("step"), seconds=ua.get("seconds"), weighting=weighting, weights=weights,
                     curve=curve, fail_reason=ua.get("fail_reason"), interrupted=bool(ua.get("interrupted")),
                     retry_of=ua.get("retry_of"))


def _weights(config: Mapping[str, Any], runs: list[RunDir]) -> dict[str, float]:
    """The weights in force at the end: the last ones the runs logged (averaged over the
    per-pair runs), else the config's fixed weights."""
    fixed = {task: float((c or {}).get("weight", 1.0)) for task, c in (config.get("tasks") or {}).items()}
    learned: list[dict[str, float]] = []
    for run in runs:
        last = [r["weight"] for r in run.history_records() if isinstance(r.get("weight"), dict) and r["weight"]]
        if last:
            learned.append(last[-1])
    if not learned:
        return fixed
    tasks = [t for t in fixed if all(t in w for w in learned)] or list(learned[0])
    return {t: sum(float(w[t]) for w in learned) / len(learned) for t in tasks}


def _history_curve(runs: list[RunDir]) -> dict[int, float]:
    """The objective per evaluation from history.jsonl (averaged over per-pair runs)."""
    by_step: dict[int, list[float]] = {}
    for run in runs:
        for r in run.history_records():
            if "objective" in r and isinstance(r["objective"], (int, float)):
                by_step.setdefault(int(r["step"]), []).append(float(r["objective"]))
    return {s: sum(v) / len(v) for s, v in sorted(by_step.items()) if len(v) == len(runs)}


def _objective_value(trial: FrozenTrial, *, i: int) -> float:
    return float(trial.values[i])


def _importances(study: optuna.Study, names: list[str]) -> tuple[dict[str, dict[str, float]], str | None]:
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(done) < 2:
        return {}, f"{len(done)} complete trial(s): parameter importances need at least 2"
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        try:
            imp = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0),
                                        target=functools.partial(_objective_value, i=i))
        except (RuntimeError, ValueError) as e:  # e.g. no parameter varies across the trials
            return {}, f"parameter importances undefined: {e}"
        out[name] = {k: float(v) for k, v in imp.items() if math.isfinite(v)}
    return out, None

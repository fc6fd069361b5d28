"""Export a ranked config as a complete trainer config (``best.yaml``) that retrains as is.

The file is the trial's own resolved config (seed and data pairs included), validated by
:func:`mtl.config.config_from_dict` and written by :func:`mtl.config.dump_config`, under a
header of comments: the study and trial it came from, its rank and scores, and the versions
of the packages that trained it. A per_pair study trained one model per pair; the exported
config trains one model on all of the study's pairs (the per-pair configs differ only in
``data.pairs``), and the header says how to retrain a single pair instead.
"""

from __future__ import annotations

import copy
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from reports.extract import ReportError
from reports.record import TrialConfigs

PACKAGES = ("mtlsearch", "torch", "transformers", "tokenizers", "datasets", "numpy", "optuna", "ray")

__all__ = ["export_best", "ranked_trials", "trial_config"]


def ranked_trials(study: optuna.Study, *, aggregator: str | None = None) -> list[optuna.trial.FrozenTrial]:
    """The COMPLETE trials, best first.

    Args:
        study: The study.
        aggregator: None: by the values the study recorded (its first objective); else a
            method of :data:`reports.aggregate.METHODS`, recomputed over the per-pair scores.

    Raises:
        ReportError: An unknown aggregator.
    """
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if aggregator is None:
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        return sorted(done, key=lambda t: (sign * t.values[0], t.number))
    from reports.aggregate import aggregate
    from reports.extract import extract

    agg = aggregate(extract(study, importances=False), methods=[aggregator])
    by_number = {t.number: t for t in done}
    return [by_number[n] for n in agg.rankings[aggregator]]


def export_best(study: optuna.Study, *, out: str | Path, rank: int = 1, aggregator: str | None = None) -> Path:
    """Write the config ranked ``rank`` as a trainer config YAML.

    Args:
        study: A study written by ``search``.
        out: The YAML file to write (its folder is created).
        rank: 1 for the best config, 2 for the runner-up, ...
        aggregator: The ranking (see :func:`ranked_trials`); None: the study's own values.

    Returns:
        The path written.

    Raises:
        ReportError: No complete trial, ``rank`` out of range, an unknown aggregator, or a
            stored config that no longer validates.
    """
    from mtl.config import ConfigError, config_from_dict, dump_config

    if rank < 1:
        raise ReportError(f"--rank must be 1 or more, got {rank}")
    ranked = ranked_trials(study, aggregator=aggregator)
    by = aggregator or f"the study's own values ({study.user_attrs.get('aggregator', 'mean')})"
    if not ranked:
        raise ReportError(f"study {study.study_name!r} has no complete trial ranked by {by}: nothing to export")
    if rank > len(ranked):
        raise ReportError(f"--rank {rank}: study {study.study_name!r} has only {len(ranked)} complete trial(s) "
                          f"ranked by {by}")
    trial = ranked[rank - 1]
    config, per_pair = trial_config(study, trial)
    try:
        cfg = config_from_dict(config, source=f"study {study.study_name}: trial {trial.number}")
    except ConfigError as e:
        raise ReportError("the stored config no longer validates:\n" + "\n".join(e.errors)) from e
    path = Path(out)
    if path.is_dir():
        raise ReportError(f"--out {path}: is a folder, expected the YAML file to write (e.g. {path / 'best.yaml'})")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"--out {path}: cannot create its folder {path.parent}: {e.strerror}") from e
    dump_config(cfg, path, header=_header(study, trial, rank=rank, by=by, seed=cfg.train.seed,
                                          pairs=list(cfg.data.pairs), per_pair=per_pair, path=path))
    return path


def trial_config(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> tuple[dict[str, Any], bool]:
    """A trial's trainer config as plain data, one model on all of the study's pairs, and
    whether the study trained one model per pair instead (the per-pair configs differ only in
    ``data.pairs``).

    Raises:
        ReportError: The trial stored no config.
    """
    configs = TrialConfigs.from_attr(trial.user_attrs.get("config"), study_mode=study.user_attrs.get("mode"))
    if configs is None:
        raise ReportError(f"trial {trial.number} of study {study.study_name!r} stored no config")
    per_pair = configs.mode == "per_pair"
    config = copy.deepcopy(dict(configs.first))
    if per_pair:
        pairs = list(study.user_attrs.get("pairs") or []) or list(configs.configs)
        config["data"] = {**config["data"], "pairs": pairs}
    return config, per_pair


def _header(study: optuna.Study, trial: optuna.trial.FrozenTrial, *, rank: int, by: str, seed: int,
            pairs: list[str], per_pair: bool, path: Path) -> str:
    names = study.user_attrs.get("metrics") or [f"objective{i}" for i in range(len(trial.values))]
    values = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, trial.values))
    lines = [f"Trial {trial.number} of study {study.study_name!r}: rank {rank} by {by} ({values}).",
             f"Seed {seed}; pairs {', '.join(pairs)}; searched: "
             + (", ".join(f"{k}={v!r}" for k, v in trial.params.items()) or "nothing")]
    for name, per in (trial.user_attrs.get("pair_scores") or {}).items():
        lines.append(f"Dev {name} per pair: " + ", ".join(f"{p} {v:.6g}" for p, v in per.items()))
    if per_pair:
        lines.append("The study trained one model per pair (per_pair mode); this config trains one on all of them. "
                     "One pair's model: add --set data.pairs=[PAIR].")
    lines += _size_lines(study, trial)
    lines.append("Packages: " + ", ".join(f"{p} {_version(p)}" for p in PACKAGES)
                 + f", python {platform.python_version()}")
    lines.append(f"Retrain: python -m mtl train --config {path} --out runs/best")
    return "".join(f"# {line}\n" for line in lines)


def _size_lines(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> list[str]:
    """At which training-data size the trial was chosen, and how to retrain on all of it."""
    configs = TrialConfigs.from_attr(trial.user_attrs.get("config"), study_mode=study.user_attrs.get("mode"))
    size = configs.first.get("data", {}).get("max_train_samples") if configs else None
    rungs = study.user_attrs.get("train_samples")
    lines = []
    if rungs:
        lines.append(f"Chosen on data-size rungs {' -> '.join(map(str, rungs))} training segments per pair; its "
                     f"value was measured at the last, {trial.user_attrs.get('train_samples', rungs[-1])}.")
    if size is not None:
        lines.append(f"Trained on {size} training segments per pair, as this config does; on all the training "
                     f"data: add --set data.max_train_samples=null (or python -m search.finalize).")
    return lines


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"

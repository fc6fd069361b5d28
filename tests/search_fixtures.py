"""Tiny search spaces over the real data slices, and the environment a search subprocess runs in."""

from __future__ import annotations

import os
from pathlib import Path

import optuna
import yaml

from tests.conftest import tiny_raw

REPO = Path(__file__).resolve().parents[1]


def space_file(tmp_path: Path, data_root: Path, cache_dir: Path, *, trials: int = 6, extra: dict | None = None,
               name: str = "tiny", train: dict | None = None) -> Path:
    """A search of tiny models on en-de (48 training, 24 dev segments), 8 steps, evaluated every 2."""
    base = tiny_raw(data_root, cache_dir, train={"max_steps": 8, "eval_every": 2, **(train or {})})
    base["data"]["max_train_samples"] = 48
    base["data"]["max_eval_samples"] = 24
    del base["data"]["pairs"]  # the space's datasets.pairs say which: one place
    space = {
        "base": base,
        "search": {"train.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                   "weighting": {"type": "categorical", "choices": ["fixed", "uncertainty"]}},
        "weights": {"when": {"weighting": "fixed"}},
        "datasets": {"pairs": ["en-de"], "mode": "joint"},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
        "sampler": {"name": "random"},
        "run": {"trials": trials, "storage": f"sqlite:///{tmp_path / 'studies' / name}.db",
                "out": str(tmp_path / "runs"), "max_concurrent": 2, "cpus_per_trial": 1, "seed": 3},
        **(extra or {}),
    }
    space = {k: v for k, v in space.items() if v is not None}  # extra={"key": None} drops a key
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def study_of(path: Path, name: str = "tiny") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{path.parent / 'studies' / name}.db")


def ray_env() -> dict[str, str]:
    """The environment of a search subprocess: the repository importable, no hub. Ray's loopback
    switch is left to the search itself (search.cluster.prepare_env), as for a user."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONPATH": path}
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    return env

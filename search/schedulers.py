"""The scheduler registry: Ray Tune's schedulers as rows, their options and defaults in one place.

Nothing here imports ``ray``: a row names its class (``module:Class``), which `search.tune`
(the one module that imports Ray) builds from the row with :meth:`Scheduler.arguments`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtl.config_loader import unknown_key
from search.fidelity import DataFidelity, read_fidelity
from search.samplers import Problems, named

__all__ = ["DEFAULT", "SCHEDULERS", "Scheduler", "read_scheduler"]


@dataclass(frozen=True)
class Scheduler:
    """One Ray Tune scheduler: its class, the options a space file may set, their defaults."""

    cls: str
    """``module:Class`` of the Ray scheduler."""
    options: Mapping[str, type] = field(default_factory=dict)
    """Options a space file's `scheduler` block may set, with their types."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Values of the options a space does not set."""
    fixed: Mapping[str, Any] = field(default_factory=dict)
    """Arguments always passed (not options)."""
    takes_metric: bool = True
    """Whether it is built with ``metric`` and ``mode`` (it compares trials)."""
    rungs: bool = False
    """ASHA rungs: a resumed search seeds them from the study (Ray does not restore them)."""
    data_rungs: bool = False
    """Takes ``train_samples``: rungs that grow the training data (`search.fidelity`)."""
    doc: str = ""

    def arguments(self, args: Mapping[str, Any], *, metric: str, mode: str) -> dict[str, Any]:
        """The constructor's keyword arguments for a space's options."""
        out = {**self.fixed, **self.defaults, **args}
        if self.takes_metric:
            out.update(metric=metric, mode=mode)
        return out


_ASHA = "ray.tune.schedulers:AsyncHyperBandScheduler"
# A trial that reaches max_t is not stopped (stop_last_trials): it is not worse than the others,
# and max_t only places the rungs; the trainer's own step budget ends a trial.
_ASHA_FIXED = {"time_attr": "training_iteration", "stop_last_trials": False}

SCHEDULERS: dict[str, Scheduler] = {
    "asha": Scheduler(_ASHA, options={"grace_period": int, "reduction_factor": float, "max_t": int, "brackets": int},
                      defaults={"max_t": 100, "grace_period": 1, "reduction_factor": 2.0, "brackets": 1},
                      fixed=_ASHA_FIXED, rungs=True, data_rungs=True,
                      doc="asynchronous successive halving (Li et al. 2020): stops trials below the rung's top share"),
    # Asynchronous HyperBand (several ASHA brackets). Ray's synchronous HyperBandScheduler pauses
    # and resumes trials, which ours do not checkpoint for.
    "hyperband": Scheduler(_ASHA, options={"max_t": int, "reduction_factor": float},
                           defaults={"max_t": 100, "grace_period": 1, "reduction_factor": 2.0, "brackets": 3},
                           fixed=_ASHA_FIXED, rungs=True, doc="asynchronous HyperBand: three ASHA brackets"),
    "median": Scheduler("ray.tune.schedulers:MedianStoppingRule",
                        options={"grace_period": int, "min_samples_required": int},
                        defaults={"grace_period": 1, "min_samples_required": 3},
                        fixed={"time_attr": "training_iteration"},
                        doc="stops a trial below the median of the others at the same step"),
    "fifo": Scheduler("ray.tune.schedulers:FIFOScheduler", takes_metric=False, doc="stops nothing"),
}
"""Scheduler name -> its row."""
DEFAULT = "asha"
"""The scheduler of a single-objective space without a `scheduler` block (several objectives: fifo)."""


def _option_problems(name: str, args: Mapping[str, Any]) -> tuple[dict[str, Any], Problems]:
    """Check a scheduler's options: (the options converted to their types, [(key, message)])."""
    allowed = SCHEDULERS[name].options
    out: dict[str, Any] = {}
    problems = []
    for key, value in args.items():
        if key not in allowed:
            problem = unknown_key(str(key), allowed, f"scheduler {name!r}")
            problems.append((key, problem.message + (f"; {problem.hint}" if problem.hint else "")))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append((key, f"must be {allowed[key].__name__}, got {value!r}"))
        elif allowed[key] is int and not float(value).is_integer():
            problems.append((key, f"must be int, got {value!r}"))
        elif key == "reduction_factor" and value <= 1:
            problems.append((key, f"must be > 1, got {value!r}"))
        elif value < 1:
            problems.append((key, f"must be >= 1, got {value!r}"))
        else:
            out[key] = allowed[key](value)
    return out, problems


def read_scheduler(raw: Any, *, metrics: list[str],
                   max_steps: int | None = None) -> tuple[str, dict[str, Any], DataFidelity | None, Problems]:
    """Read a space file's `scheduler` block; absent: the default, or fifo for several
    objectives, which Ray's schedulers cannot prune on.

    Args:
        raw: The block as written.
        metrics: The study's objectives.
        max_steps: ``base.train.max_steps`` (data-size rungs need it unset).

    Returns:
        ``(name, options converted to their types, data-size rungs or None, problems)``.
    """
    multi = len(metrics) > 1
    if raw is None:
        return ("fifo", {}, None, []) if multi else (DEFAULT, {}, None, [])
    name, args, problems = named(raw, "scheduler", "fifo" if multi else DEFAULT, SCHEDULERS)
    if problems:
        return "fifo", {}, None, problems
    row = SCHEDULERS[name]
    fidelity, args, problems = read_fidelity(args, supported=row.data_rungs, scheduler=name, max_steps=max_steps,
                                             factor=float(args.get("reduction_factor",
                                                                   row.defaults.get("reduction_factor", 2.0))))
    converted, found = _option_problems(name, args)
    problems += [(f"scheduler.{key}", message) for key, message in found]
    if multi and SCHEDULERS[name].takes_metric:
        problems.append(("scheduler.name", f"{name!r} needs one metric, but objective.metrics has {len(metrics)} "
                                           f"({', '.join(metrics)}): Ray schedulers prune on a single metric; "
                                           f"use fifo or one metric"))
    return name, converted, fidelity, problems

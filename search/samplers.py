"""The sampler registry a space file names, and the checks of a sampler's options.

``SAMPLERS`` maps a name to a small function ``(params, seed, *, conditional, **args) -> optuna
sampler`` that imports its sampler class when called. A sampler's options are checked against
its constructor's signature, so they follow the installed Optuna.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mtl.config_loader import unknown_key
from search.distributions import Param

if TYPE_CHECKING:
    import optuna

__all__ = ["SAMPLERS", "Problems", "grid_values", "named", "read_sampler"]

Problems = list[tuple[str, str]]
"""(dotted key, message) pairs; the caller puts the file name in front."""

_CLASSES = {"tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler", "random": "RandomSampler",
            "grid": "GridSampler", "qmc": "QMCSampler", "nsga2": "NSGAIISampler"}
_SINGLE_OBJECTIVE = frozenset({"cmaes"})  # samplers that reject a study with several objectives
_NEEDS = {"cmaes": ("cmaes",), "gp": ("torch", "scipy"), "qmc": ("scipy",)}  # imported when they sample
_OURS = ("seed", "search_space")  # set from the space, never from its `sampler` block


def _sampler_class(name: str) -> type:
    import optuna.samplers

    return getattr(optuna.samplers, _CLASSES[name])


def _options(name: str) -> dict[str, inspect.Parameter]:
    """The constructor options a space file may set for sampler ``name``."""
    params = inspect.signature(_sampler_class(name)).parameters.values()
    return {p.name: p for p in params
            if p.name not in _OURS and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide Optuna's ExperimentalWarning: a space file's user cannot act on it."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def _tpe(params: Sequence[Param], seed: int, *, conditional: bool, **args: Any) -> optuna.samplers.BaseSampler:
    """TPE; multivariate with a constant liar by default (and grouped for conditional spaces),
    where the installed Optuna has those options."""
    from optuna.samplers import TPESampler

    accepted = _options("tpe")
    defaults: dict[str, Any] = {k: True for k in ("multivariate", "constant_liar") if k in accepted}
    if "group" in accepted and conditional and args.get("multivariate", defaults.get("multivariate")):
        defaults["group"] = True
    with _quiet():
        return TPESampler(seed=seed, **{**defaults, **args})


def _grid(params: Sequence[Param], seed: int, *, conditional: bool, **args: Any) -> optuna.samplers.BaseSampler:
    import optuna

    class GridSampler(optuna.samplers.GridSampler):  # its name, as Optuna's
        """Optuna's grid without its ``study.stop()`` once the grid is covered: Ray Tune tells
        the study outside ``study.optimize``, where a stop raises RuntimeError (logged by Ray as
        an error stopping the last trial); the search ends at ``run.trials`` anyway."""

        def after_trial(self, *args: Any, **kwargs: Any) -> None:
            return None

    with _quiet():
        return GridSampler(grid_values(params), seed=seed, **args)


def _plain(name: str) -> Callable[..., optuna.samplers.BaseSampler]:
    def make(params: Sequence[Param], seed: int, *, conditional: bool, **args: Any) -> optuna.samplers.BaseSampler:
        with _quiet():
            return _sampler_class(name)(seed=seed, **args)
    make.__name__ = make.__qualname__ = f"_{name}"
    make.__doc__ = f"optuna.samplers.{_CLASSES[name]}(seed=seed, **args)"
    return make


SAMPLERS: dict[str, Callable[..., optuna.samplers.BaseSampler]] = {
    "tpe": _tpe,
    "cmaes": _plain("cmaes"),
    "gp": _plain("gp"),
    "random": _plain("random"),
    "grid": _grid,
    "qmc": _plain("qmc"),
    "nsga2": _plain("nsga2"),
}
"""Sampler name -> ``fn(params, seed, *, conditional, **args) -> optuna sampler``."""


def grid_values(params: Sequence[Param]) -> dict[str, list[Any]]:
    """The grid of every parameter: categorical choices, or low..high by step.

    Raises:
        ValueError: A float parameter has no step (the grid needs each value listed).
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    grid: dict[str, list[Any]] = {}
    for p in params:
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            grid[p.path] = list(d.choices)
        elif isinstance(d, FloatDistribution):
            if d.step is None:
                raise ValueError(f"grid needs a step for float parameter {p.path}")
            n = round((d.high - d.low) / d.step)
            grid[p.path] = [float(f"{d.low + i * d.step:.12g}") for i in range(n + 1)]
        elif isinstance(d, IntDistribution):
            grid[p.path] = list(range(d.low, d.high + 1, d.step))
    return grid


def _sampler_problems(name: str, args: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Unknown options of sampler ``name`` and values of the wrong simple type, as (key, message)."""
    accepted = _options(name)
    problems = []
    for key, value in args.items():
        if key not in accepted:
            what = f"sampler {name!r}" + (f" ({key} is set from the space)" if key in _OURS else "")
            problems.append((key, _message(unknown_key(str(key), accepted, what))))
            continue
        wanted = _simple_types(accepted[key].annotation)
        if wanted and not any(_is(value, t) for t in wanted):
            problems.append((key, f"must be {' or '.join(wanted)}, got {value!r}"))
    return problems


def _simple_types(annotation: Any) -> list[str]:
    """``"bool | None"`` -> ["bool", "None"]; [] when the annotation is not plain scalars."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    names = [t.strip() for t in text.split("|")]
    return names if names and set(names) <= {"int", "float", "bool", "str", "None"} else []


def _is(value: Any, type_name: str) -> bool:
    if type_name == "None":
        return value is None
    if type_name == "bool":
        return isinstance(value, bool)
    if type_name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_name == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def read_sampler(raw: Any, *, n_metrics: int, weights: bool,
                 floats_without_step: list[str]) -> tuple[str, dict[str, Any], Problems]:
    """Read a space file's `sampler` block (a name, or ``{name: .., option: value}``).

    Args:
        raw: The block as parsed (None: absent).
        n_metrics: Objectives of the study (several: nsga2 by default; cmaes refused).
        weights: Whether the space searches task weights (a grid cannot).
        floats_without_step: Searched float keys with no step (a grid cannot list them).

    Returns:
        ``(name, options as written, problems)``.
    """
    default = "nsga2" if n_metrics > 1 else "tpe"
    name, args, problems = named(raw, "sampler", default, SAMPLERS)
    if problems:
        return default, {}, problems
    if missing := _missing(name):
        problems.append(("sampler.name", f"{name!r} needs {' and '.join(missing)}: pip install {' '.join(missing)}"))
    problems += [(f"sampler.{key}", message) for key, message in _sampler_problems(name, args)]
    if name in _SINGLE_OBJECTIVE and n_metrics > 1:
        problems.append(("sampler.name", f"{name!r} optimizes one objective, but objective.metrics has "
                                         f"{n_metrics}; use nsga2, tpe, gp, random or qmc"))
    if name == "grid" and weights:
        problems.append(("sampler.name", "grid cannot search weights (a continuous simplex); remove the weights "
                                         "block or use another sampler"))
    if name == "grid":
        problems += [(f"search.{path}", "grid needs every parameter categorical, int, or float with a step; "
                                        "this float has no step") for path in floats_without_step]
    return name, args, problems


def _missing(name: str) -> list[str]:
    """Packages sampler ``name`` imports when it samples that are not installed (none imported here)."""
    return [m for m in _NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]


def _message(problem: Any) -> str:
    return problem.message + (f"; {problem.hint}" if problem.hint else "")


def named(raw: Any, block: str, default: str, registry: Mapping[str, Any]) -> tuple[str, dict[str, Any], Problems]:
    """``name`` or ``{name: .., **options}`` -> (name, options, problems with the name)."""
    if raw is None or isinstance(raw, str):
        name, args = raw or default, {}
    elif isinstance(raw, Mapping):
        name, args = raw.get("name", default), {str(k): v for k, v in raw.items() if k != "name"}
    else:
        return default, {}, [(block, f"must be a name or a mapping {{name: .., option: value}}, got {raw!r}")]
    if not isinstance(name, str):
        return default, {}, [(f"{block}.name", f"must be a name, got {name!r}")]
    if name not in registry:
        hint = unknown_key(name, sorted(registry), block).hint
        return default, {}, [(f"{block}.name", f"unknown {name!r}; {hint}")]
    return name, args, []

"""Search entries as Optuna's own distributions: built from a space file's spec, checked, described.

``{type: float, low: 1e-4, high: 1e-2, log: true}`` becomes ``FloatDistribution(1e-4, 1e-2,
log=True)``; Optuna's constructors check the rules and their ``ValueError`` reaches the user
with the file and key in front. A :class:`Param` is one searched key with its distribution.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from search.internals import distribution_contains

if TYPE_CHECKING:
    import optuna

__all__ = ["Param", "contains", "describe", "from_spec", "number", "sample_points", "suggest"]


@dataclass(frozen=True)
class Param:
    """One searched trainer key."""

    path: str
    """Dotted key into the trainer config, e.g. ``train.lr``; also the Optuna parameter name."""
    distribution: BaseDistribution
    """Optuna's own distribution."""
    when: dict[str, tuple]
    """Condition key -> allowed values; the parameter is sampled only when all hold."""


def suggest(trial: optuna.trial.BaseTrial, name: str, d: BaseDistribution) -> Any:
    """Ask ``trial`` for a value of ``d`` under ``name``."""
    if isinstance(d, FloatDistribution):
        return trial.suggest_float(name, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, log=d.log, step=d.step)
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    raise TypeError(f"no suggest for {type(d).__name__}")  # a distribution this module never builds


def from_spec(kind: str, spec: Mapping[str, Any]) -> BaseDistribution:
    """Optuna's distribution for a spec; its ValueError carries the rule and the values."""
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list):
            raise ValueError(f"choices must be a list, got {choices!r}")
        if bad := [c for c in choices if c is not None and not isinstance(c, (bool, int, float, str))]:
            raise ValueError(f"choices must be null, bool, int, float or str (Optuna stores them), got {bad[0]!r}")
        return CategoricalDistribution(tuple(choices))
    if missing := [k for k in ("low", "high") if k not in spec]:
        raise ValueError(f"a {kind} parameter needs low and high; missing {' and '.join(missing)}")
    convert = _int if kind == "int" else _float
    low, high = convert(spec["low"], "low"), convert(spec["high"], "high")
    step = spec.get("step", 1 if kind == "int" else None)
    step = None if step is None else convert(step, "step")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ValueError(f"log must be true or false, got {log!r}")
    cls = IntDistribution if kind == "int" else FloatDistribution
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # high not on the step grid: rejected below
        dist = cls(low, high, log=log, step=step)  # type: ignore[arg-type]
    if dist.high != high:
        raise ValueError(f"`high - low` must be a multiple of `step`, but got (low={low}, high={high}, step={step})")
    return dist


def _int(value: Any, key: str) -> int:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be int, got {value!r}")
    return value


def _float(value: Any, key: str) -> float:
    if (v := number(value)) is None:
        raise ValueError(f"{key} must be a number, got {value!r}")
    return v


def number(value: Any) -> float | None:
    """A finite number from YAML (which reads ``1e-4`` without a dot as a string), else None."""
    if isinstance(value, bool):
        return None
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def sample_points(dist: BaseDistribution) -> list[tuple[str, Any]]:
    """Values a probe sets: every choice, or low, high and (floats) an uneven point between."""
    if isinstance(dist, CategoricalDistribution):
        return [("choice", c) for c in dist.choices]
    assert isinstance(dist, (FloatDistribution, IntDistribution)), dist  # the kinds from_spec builds
    points: list[tuple[str, Any]] = [("low", dist.low), ("high", dist.high)]
    if isinstance(dist, FloatDistribution) and dist.low < dist.high:
        t = 1 / math.pi
        mid = dist.low * (dist.high / dist.low) ** t if dist.log else dist.low + (dist.high - dist.low) * t
        if dist.step is not None:
            mid = dist.low + round((mid - dist.low) / dist.step) * dist.step
        points.append(("value", mid))
    return points


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` is a value ``dist`` can sample."""
    if isinstance(dist, CategoricalDistribution):
        return value in dist.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return distribution_contains(dist, value)


def describe(dist: BaseDistribution) -> str:
    """``a float in [0.0001, 0.003] (log)``, ``an int in [1, 4]``, ``one of 'fixed', 'dwa'``."""
    if isinstance(dist, CategoricalDistribution):
        return "one of " + ", ".join(map(repr, dist.choices))
    assert isinstance(dist, (FloatDistribution, IntDistribution)), dist  # the kinds from_spec builds
    text = f"{'a float' if isinstance(dist, FloatDistribution) else 'an int'} in [{dist.low:g}, {dist.high:g}]"
    if dist.log:
        text += " (log)"
    if dist.step is not None and not (isinstance(dist, IntDistribution) and dist.step == 1):
        text += f" in steps of {dist.step:g}"
    return text

"""What a row of `mtl.weighting.WEIGHTINGS` says about a strategy, without importing torch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mtl.registry import load_object

__all__ = ["Option", "Strategy"]


@dataclass(frozen=True)
class Option:
    """One option of a strategy (a key of `weighting_args`): its type and its lower bound."""

    type: type
    """``int`` or ``float``."""
    low: float | None = None
    """Lower bound (None: none)."""
    low_open: bool = False
    """Whether the bound itself is excluded (``> low``) or allowed (``>= low``)."""
    doc: str = ""

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None: it is fine), e.g. ``must be > 0, got -1``."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {value!r}"
        if self.type is int and not float(value).is_integer():
            return f"must be int, got {value!r}"
        if value != value or value in (float("inf"), float("-inf")):
            return f"must be a finite number, got {value!r}"
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return f"must be {'>' if self.low_open else '>='} {self.low:g}, got {value!r}"
        return None

    def convert(self, value: Any) -> Any:
        """The value as the strategy's constructor takes it (``50.0`` -> ``50`` for an int)."""
        return self.type(value)


@dataclass(frozen=True)
class Strategy:
    """One task-weighting strategy: where its class lives and what the config may say about it."""

    cls: str
    """``module:Class`` of its `mtl.weighting.base.Weighting` subclass, imported when a run starts."""
    reads_task_weights: bool = False
    """Whether it uses `tasks.<t>.weight` (a search may then search those weights)."""
    options: Mapping[str, Option] = field(default_factory=dict)
    """Its constructor's options, the keys `weighting_args` may set."""
    paper: str = ""

    def load(self) -> Any:
        """The strategy class (imports torch)."""
        return load_object(self.cls)

    def arguments(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """`weighting_args` as the constructor takes them (each converted by its option)."""
        return {key: self.options[key].convert(value) for key, value in given.items()}

"""What a study written by `search` holds per trial, as one typed contract for its writer and readers.

A trial's trainer configs are stored in one shape, ``{"mode": "joint" | "per_pair", "configs":
{key: config}}``: joint, one config under ``"all"`` (one model on every pair); per_pair, one
config per pair, each trained in the pair's own run directory below the trial's. The search
writes it with :meth:`TrialConfigs.to_attr`; the reports read it with :meth:`TrialConfigs.from_attr`,
the one place that also reads the shapes older studies stored. Imports nothing heavy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mtl.rundir import RunDir

__all__ = ["JOINT", "Mode", "TrialConfigs"]

Mode = Literal["joint", "per_pair"]
JOINT = "all"
"""The key of a joint trial's one config."""


@dataclass(frozen=True)
class TrialConfigs:
    """A trial's complete trainer config(s), as plain data (`mtl.config.to_dict`)."""

    mode: Mode
    """joint: one model on every pair; per_pair: one model per pair."""
    configs: dict[str, dict[str, Any]]
    """joint: ``{"all": config}``; per_pair: ``{pair: config}``."""

    def __post_init__(self) -> None:
        if not self.configs or (self.mode == "joint" and list(self.configs) != [JOINT]):
            raise ValueError(f"a {self.mode} trial's configs must be {{'{JOINT}': config}}"
                             if self.mode == "joint" else "a per_pair trial needs one config per pair")

    @property
    def first(self) -> dict[str, Any]:
        """The joint config, or the first pair's (per_pair configs differ only in data.pairs)."""
        return next(iter(self.configs.values()))

    def run_dirs(self, run_dir: str | Path) -> dict[str, RunDir]:
        """Where each config trained: the trial's run directory, or one per pair below it."""
        base = RunDir(run_dir)
        if self.mode == "joint":
            return {JOINT: base}
        return {pair: base.pair(pair) for pair in self.configs}

    def run_dir_of(self, run_dir: str | Path, pair: str) -> RunDir:
        """The run directory that holds a pair's predictions."""
        return RunDir(run_dir) if self.mode == "joint" else RunDir(run_dir).pair(pair)

    def to_attr(self) -> dict[str, Any]:
        """The trial's ``config`` user attribute."""
        return {"mode": self.mode, "configs": self.configs}

    @classmethod
    def from_attr(cls, raw: Any, *, study_mode: str | None = None) -> TrialConfigs | None:
        """Read a trial's ``config`` attribute (None: the trial stored none).

        Args:
            raw: The attribute: ``{"mode", "configs"}``; or, from studies written before this
                shape, one config (joint) or ``{pair: config}`` (per_pair with several pairs).
            study_mode: The study's ``mode`` attribute, which tells an older single-pair
                per_pair trial (stored as one config) from a joint one.
        """
        if not isinstance(raw, Mapping) or not raw:
            return None
        if set(raw) == {"mode", "configs"}:
            return cls(mode=raw["mode"], configs={str(k): dict(v) for k, v in raw["configs"].items()})
        if "data" in raw:  # an older study: one config
            if study_mode == "per_pair":
                pairs = list((raw.get("data") or {}).get("pairs") or [])
                return cls(mode="per_pair", configs={str(pairs[0]) if pairs else JOINT: dict(raw)})
            return cls(mode="joint", configs={JOINT: dict(raw)})
        return cls(mode="per_pair", configs={str(k): dict(v) for k, v in raw.items()})

"""The options of each task head, as frozen dataclasses (a row of `mtl.catalogue.TASKS` names its class).

Importing this module costs nothing heavy: no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mtl.config_loader import Problem, check

__all__ = ["MLMConfig", "PostEditConfig", "RegressionTaskConfig", "SourceTagsConfig", "TaskConfig", "WordTagsConfig"]


@dataclass(frozen=True)
class TaskConfig:
    """Options every task head has."""

    weight: float = 1.0
    """Loss weight (read by the strategies whose row says `reads_task_weights`; the search tunes it)."""

    def __post_init__(self) -> None:
        check(self.problems())

    def problems(self) -> list[Problem]:
        """What is wrong with these options (subclasses add their own)."""
        return [Problem("weight", f"must be >= 0, got {self.weight}")] if self.weight < 0 else []

    @property
    def target_tokens(self) -> int | None:
        """Subword tokens of the text this head generates (None: it generates none)."""
        return None


@dataclass(frozen=True)
class RegressionTaskConfig(TaskConfig):
    """Sentence-level regression (`da`: z-scored direct assessment; `hter`)."""


@dataclass(frozen=True)
class _TagsConfig(TaskConfig):
    bad_weight: float = 3.0
    """Cross-entropy class weight of BAD (OK is 1): BAD tags are rare, gaps 2.5-5 %."""

    def problems(self) -> list[Problem]:
        found = super().problems()
        if self.bad_weight <= 0:
            found.append(Problem("bad_weight", f"must be > 0, got {self.bad_weight}"))
        return found


@dataclass(frozen=True)
class WordTagsConfig(_TagsConfig):
    """MT word and gap tags, OK/BAD."""

    gaps: Literal["concat", "mean", "none"] = "concat"
    """A gap's vector from its neighbour words: their concatenation, their mean, or no gap
    prediction (gaps then predicted OK, still scored)."""


@dataclass(frozen=True)
class SourceTagsConfig(_TagsConfig):
    """Source word tags, OK/BAD."""


@dataclass(frozen=True)
class PostEditConfig(TaskConfig):
    """A small Transformer decoder over the shared encoder."""

    mode: Literal["post_edit", "translate"] = "post_edit"
    """post_edit: attends to src + mt; translate: attends to src only. Target: pe."""
    layers: int = 2
    """Decoder layers."""
    heads: int = 2
    """Decoder attention heads (must divide the encoder hidden size)."""
    max_length: int = 128
    """Target subword tokens (longer post-edits are truncated for training)."""
    decoding: Literal["greedy", "beam"] = "greedy"
    """Decoding used at evaluation."""
    beam_size: int = 4
    """Beams when decoding is 'beam'."""
    label_smoothing: float = 0.1
    """Label smoothing of the decoder's cross-entropy."""

    @property
    def target_tokens(self) -> int | None:
        return self.max_length

    def problems(self) -> list[Problem]:
        found = super().problems()
        for key in ("layers", "heads", "max_length", "beam_size"):
            if getattr(self, key) < 1:
                found.append(Problem(key, f"must be >= 1, got {getattr(self, key)}"))
        if not 0.0 <= self.label_smoothing < 1.0:
            found.append(Problem("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}"))
        return found


@dataclass(frozen=True)
class MLMConfig(TaskConfig):
    """Auxiliary masked-LM on the task text (task-adaptive pretraining)."""

    mask_prob: float = 0.15
    """Share of subword tokens masked (80 % [MASK], 10 % random, 10 % kept)."""

    def problems(self) -> list[Problem]:
        found = super().problems()
        if not 0.0 < self.mask_prob < 1.0:
            found.append(Problem("mask_prob", f"must be in (0, 1), got {self.mask_prob}"))
        return found

"""What every task head sees: the shared encoder's output for one batch."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from mtl.config import ModelConfig, TaskConfig
from mtl.model.pooling import pool_words


@dataclass
class Encoded:
    """The shared encoder's output for a batch, plus lazily pooled word vectors."""

    hidden: torch.Tensor
    """[batch, tokens, hidden]."""
    pooled: torch.Tensor
    """[batch, hidden]: the family's sentence vector."""
    batch: dict[str, torch.Tensor]
    """The collated batch."""
    word_pooling: str
    """first / mean / max."""
    encode: Callable[[torch.Tensor], torch.Tensor]
    """Re-run the shared encoder on other input ids (same mask), e.g. masked for MLM."""
    generator: torch.Generator | None = None
    """Random source for evaluation-time draws (None in training: the global RNG)."""
    _words: dict[str, torch.Tensor] = field(default_factory=dict)

    def words(self, side: str) -> torch.Tensor:
        """Word vectors of ``"src"`` or ``"mt"``: [batch, words, hidden]."""
        if side not in self._words:
            n = int(self.batch[f"n_{side}"].max().item()) if self.batch[f"n_{side}"].numel() else 0
            self._words[side] = pool_words(self.hidden, self.batch[f"{side}_word"], n, self.word_pooling)
        return self._words[side]

    def with_inputs(self, *, sentence: torch.Tensor | None = None, mt_words: torch.Tensor | None = None) -> "Encoded":
        """A copy whose pooled vector ([batch, F]) and/or MT word vectors ([batch, words, F])
        have extra inputs appended, e.g. glass-box features."""
        pooled, words = self.pooled, dict(self._words)
        if sentence is not None:
            pooled = torch.cat([pooled, sentence.to(pooled.dtype)], -1)
        if mt_words is not None:
            words["mt"] = torch.cat([self.words("mt"), mt_words.to(self.hidden.dtype)], -1)
        return dataclasses.replace(self, pooled=pooled, _words=words)


class Head(nn.Module):
    """A task head: a loss on the batch's labelled rows, and per-row predictions."""

    def __init__(self, name: str, cfg: TaskConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any) -> None:
        super().__init__()
        self.name = name
        self.cfg = cfg

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        """Mean loss over the rows that have this task's label; None when none has."""
        raise NotImplementedError

    def predict(self, enc: Encoded) -> list[Any]:
        """One prediction per row of the batch, in batch order."""
        raise NotImplementedError


def mlp(hidden_size: int, out: int, dropout: float, *, inputs: int | None = None) -> nn.Sequential:
    """The small two-layer head used by sentence and tag tasks."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs or hidden_size, hidden_size), nn.Tanh(),
                         nn.Dropout(dropout), nn.Linear(hidden_size, out))

"""Sentence-level regression: `da` (z-scored direct assessment) and `hter`. MSE loss."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from mtl.config import ModelConfig, TaskConfig
from mtl.model.heads.base import Encoded, Head, mlp


class SentenceRegression(Head):
    """Predicts the label named like the task (``da`` or ``hter``) from the sentence vector
    (plus ``extra_inputs`` appended to it, e.g. glass-box features)."""

    def __init__(self, name: str, cfg: TaskConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any, extra_inputs: int = 0) -> None:
        super().__init__(name, cfg, hidden_size=hidden_size, model_cfg=model_cfg, tokenizer=tokenizer)
        self.net = mlp(hidden_size, 1, model_cfg.dropout, inputs=hidden_size + extra_inputs)

    def _scores(self, enc: Encoded) -> torch.Tensor:
        return self.net(enc.pooled).squeeze(-1).float()

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        gold = enc.batch[self.name]
        has = ~torch.isnan(gold)
        if not has.any():
            return None
        return F.mse_loss(self._scores(enc)[has], gold[has])

    def predict(self, enc: Encoded) -> list[float]:
        return self._scores(enc).tolist()

"""Auxiliary masked-LM on the task text (task-adaptive pretraining, Gururangan et al. 2020).

The shared encoder runs a second time on a masked copy of the batch, so the other heads
still see the clean text.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl.config import ModelConfig
from mtl.model.heads.base import Encoded, Head
from mtl.task_options import MLMConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit


class MaskedLM(Head):
    """BERT-style masking: of the chosen tokens 80 % [MASK], 10 % random, 10 % unchanged."""

    cfg: MLMConfig

    def __init__(self, name: str, cfg: MLMConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any) -> None:
        super().__init__(name, cfg, hidden_size=hidden_size, model_cfg=model_cfg, tokenizer=tokenizer)
        self.mask_id, self.vocab = tokenizer.mask_token_id, len(tokenizer)
        self.transform = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.LayerNorm(hidden_size))
        self.out = nn.Linear(hidden_size, self.vocab)

    def _masked(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        ids, g = enc.batch["input_ids"], enc.generator
        maskable = (enc.batch["seq"] >= 0) & (enc.batch["attention_mask"] == 1)
        def draw() -> torch.Tensor:
            return torch.rand(ids.shape, generator=g, device="cpu").to(ids.device)
        chosen = maskable & (draw() < self.cfg.mask_prob)
        labels = ids.masked_fill(~chosen, -100)
        how = draw()
        random_ids = torch.randint(self.vocab, ids.shape, generator=g, device="cpu").to(ids.device)
        masked = torch.where(chosen & (how < 0.8), torch.full_like(ids, self.mask_id), ids)
        masked = torch.where(chosen & (how >= 0.8) & (how < 0.9), random_ids, masked)
        return masked, labels

    def _logits_and_labels(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor]:
        masked, labels = self._masked(enc)
        hidden = enc.encode(masked)
        where = labels != -100
        return self.out(self.transform(hidden[where])).float(), labels[where]

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        logits, labels = self._logits_and_labels(enc)
        if labels.numel() == 0:
            return None
        return F.cross_entropy(logits, labels)

    def predict(self, enc: Encoded) -> list[tuple[int, int]]:
        """Per row: (correctly recovered masked tokens, masked tokens)."""
        masked, labels = self._masked(enc)
        hidden = enc.encode(masked)
        guess = self.out(self.transform(hidden)).argmax(-1)
        where = labels != -100
        correct = ((guess == labels) & where).sum(1).tolist()
        return list(zip(correct, where.sum(1).tolist()))

    def score(self, split: PairSplit, preds: list[tuple[int, int]]) -> dict[str, float]:
        """The share of masked tokens recovered (NaN when none was masked)."""
        correct, total = sum(c for c, _ in preds), sum(n for _, n in preds)
        return {"accuracy": correct / total if total else math.nan}

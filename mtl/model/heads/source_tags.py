"""Source word tags (OK/BAD): which source words were mistranslated or left out."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from mtl.config import ModelConfig, SourceTagsConfig
from mtl.model.heads.base import Encoded, Head, mlp


class SourceTags(Head):
    """Tags each kept source word."""

    def __init__(self, name: str, cfg: SourceTagsConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any) -> None:
        super().__init__(name, cfg, hidden_size=hidden_size, model_cfg=model_cfg, tokenizer=tokenizer)
        self.net = mlp(hidden_size, 2, model_cfg.dropout)
        self.register_buffer("class_weight", torch.tensor([1.0, cfg.bad_weight]), persistent=False)

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        gold = enc.batch["src_tags"]
        if not (gold != -100).any():
            return None
        logits = self.net(enc.words("src")).float()
        w = logits.shape[1]
        return F.cross_entropy(logits.reshape(-1, 2), gold[:, :w].reshape(-1),
                               weight=self.class_weight, ignore_index=-100)

    def predict(self, enc: Encoded) -> list[list[int]]:
        tags = self.net(enc.words("src")).argmax(-1).tolist()
        return [tags[i][:n] for i, n in enumerate(enc.batch["n_src"].tolist())]

"""One encoder class for every family: it reads the family's row of BACKBONES."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl.config import ModelConfig
from mtl.model.backbones import BACKBONES, Backbone
from mtl.model.checkpoints import CheckpointError
from mtl.registry import lookup


class Encoder(nn.Module):
    """A transformers encoder plus the row that says how to pool it."""

    def __init__(self, backbone: Backbone, model: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.model: Any = model  # a transformers PreTrainedModel

    @property
    def hidden_size(self) -> int:
        return self.model.get_input_embeddings().weight.shape[1]

    @classmethod
    def build(cls, cfg: ModelConfig, *, vocab_size: int, pad_token_id: int) -> Encoder:
        """A freshly initialised encoder of the family at the config's size."""
        from transformers import AutoConfig, AutoModel

        backbone = lookup(BACKBONES, cfg.backbone, where="model.backbone")
        sizes = {
            "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_layers,
            "num_heads": cfg.num_heads,
            "intermediate_size": cfg.intermediate_size or 4 * cfg.hidden_size,
            "dropout": cfg.dropout,
            "max_positions": cfg.max_length + backbone.position_offset,
        }
        kwargs = {backbone.size_keys[k]: v for k, v in sizes.items() if k in backbone.size_keys}
        config = AutoConfig.for_model(backbone.model_type, vocab_size=vocab_size,
                                      pad_token_id=pad_token_id, **backbone.extra_config, **kwargs)
        return cls(backbone, AutoModel.from_config(config))

    @classmethod
    def from_pretrained(cls, backbone_name: str, path: str | Path) -> Encoder:
        """Load a checkpoint with `AutoModel.from_pretrained` (local files only) and check it is of the family.

        Raises:
            CheckpointError: The folder is missing, incomplete or corrupt, or of another family.
        """
        from transformers import AutoConfig, AutoModel

        backbone = lookup(BACKBONES, backbone_name, where="model.backbone")
        try:
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"model.pretrained: {path}: cannot read its config.json: {_first_line(e)}") from e
        if config.model_type != backbone.model_type:
            families = [n for n, row in BACKBONES.items() if row.model_type == config.model_type]
            hint = f"; set model.backbone: {families[0]}" if families else f"; known families: {', '.join(BACKBONES)}"
            raise CheckpointError(f"model.pretrained: {path} is a {config.model_type!r} checkpoint, "
                                  f"not {backbone.model_type!r} (model.backbone: {backbone_name}){hint}")
        from safetensors import SafetensorError

        try:
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, RuntimeError, SafetensorError) as e:  # a missing, cut or corrupt weights file
            raise CheckpointError(f"model.pretrained: {path}: cannot load its weights: {_first_line(e)}") from e
        return cls(backbone, model)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """The sentence vector: first token (right padding) or last token (left padding)."""
        return hidden[:, 0] if self.backbone.pool == "first" else hidden[:, -1]

    def last_layer_parameters(self) -> list[nn.Parameter]:
        """Parameters of the top transformer layer (what GradNorm measures gradients on)."""
        named = list(self.model.named_parameters())
        index = [int(m.group(1)) for n, _ in named if (m := re.search(r"layer\.(\d+)\.", n))]
        if not index:
            return [p for _, p in named]
        top = f"layer.{max(index)}."
        return [p for n, p in named if top in n]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__

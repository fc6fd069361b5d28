"""The shared encoder and its task heads; saved as a self-describing checkpoint folder.

A checkpoint folder holds `config.json` + `model.safetensors` (the encoder, loadable on its
own by `transformers.AutoModel.from_pretrained`), the tokenizer files, `heads.safetensors`,
`run_config.yaml` (the complete trainer config) and, when the heads take glass-box features,
`feature_stats.json` (their standardisation statistics from the training split).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import torch
from torch import nn

from mtl.catalogue import TASKS
from mtl.config import ConfigError, RunConfig, dump_config, load_config
from mtl.data.tokenizer import load_tokenizer
from mtl.files import recover_dir, replace_dir, scratch
from mtl.model.backbones import BACKBONES
from mtl.model.checkpoints import CheckpointError, resolve_pretrained
from mtl.model.encoder import Encoder
from mtl.model.features import GlassBox, load_stats, save_stats
from mtl.model.heads.base import Encoded, Head
from mtl.registry import lookup

HEADS_FILE = "heads.safetensors"
CONFIG_FILE = "run_config.yaml"


class MultiTaskModel(nn.Module):
    """One shared encoder, one head per enabled task, the glass-box features some heads take."""

    def __init__(self, cfg: RunConfig, encoder: Encoder, tokenizer: Any, *,
                 feature_stats: dict[str, dict[str, float]] | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.features = GlassBox(cfg, feature_stats)

        def head(name: str, task_cfg: Any) -> Head:
            width = self.features.width(name)  # only heads fed features (the config checks which) take it
            head_class = lookup(TASKS, name, where="tasks").head_class()
            return head_class(name, task_cfg, hidden_size=encoder.hidden_size, model_cfg=cfg.model,
                              tokenizer=tokenizer, **({"extra_inputs": width} if width else {}))
        self.heads = nn.ModuleDict({name: head(name, task_cfg) for name, task_cfg in cfg.tasks.items()})
        for h in self.task_heads.values():
            h.init_from_encoder(encoder.model.get_input_embeddings())

    @property
    def task_heads(self) -> dict[str, Head]:
        """The heads by task name, typed (``heads`` is their ModuleDict)."""
        return {name: cast(Head, h) for name, h in self.heads.items()}

    @classmethod
    def build(cls, cfg: RunConfig, tokenizer: Any, *,
              feature_stats: dict[str, dict[str, float]] | None = None) -> MultiTaskModel:
        """The encoder from `model.pretrained`, or a new one at the config's size.

        Args:
            cfg: The run's config.
            tokenizer: Its tokenizer.
            feature_stats: Standardisation statistics of the glass-box features the config
                feeds to heads (`mtl.model.features.feature_stats` on the training split).

        Raises:
            ValueError: The config feeds features to heads and ``feature_stats`` lacks them.
            mtl.model.checkpoints.CheckpointNotInstalled: `model.pretrained` names a packaged
                checkpoint that is not installed.
        """
        if cfg.model.pretrained:
            encoder = Encoder.from_pretrained(cfg.model.backbone, resolve_pretrained(cfg.model.pretrained))
        else:
            encoder = Encoder.build(cfg.model, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
        return cls(cfg, encoder, tokenizer, feature_stats=feature_stats)

    def encode(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator | None = None) -> Encoded:
        """Run the shared encoder once for every head."""
        types = batch.get("token_type_ids")
        mask = batch["attention_mask"]
        hidden = self.encoder(batch["input_ids"], mask, types)
        return Encoded(hidden=hidden, pooled=self.encoder.pool(hidden), batch=batch,
                       word_pooling=self.cfg.model.word_pooling,
                       encode=lambda ids: self.encoder(ids, mask, types), generator=generator)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-task losses; a task with no labelled row in the batch is absent."""
        enc = self.encode(batch)
        losses = {}
        for name, head in self.task_heads.items():
            loss = head.loss(self.features(name, enc))
            if loss is not None:
                losses[name] = loss
        return losses

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor], *, generator: torch.Generator | None = None) -> dict[str, list]:
        """Per-task predictions, one per row."""
        enc = self.encode(batch, generator=generator)
        return {name: head.predict(self.features(name, enc)) for name, head in self.task_heads.items()}

    @torch.no_grad()
    def outputs(self, batch: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
        """Per row, what every head that has a per-segment output says (`Head.outputs`), merged."""
        enc = self.encode(batch)
        rows: list[dict[str, Any]] = [{} for _ in range(batch["input_ids"].shape[0])]
        for name, head in self.task_heads.items():
            for row, found in zip(rows, head.outputs(self.features(name, enc)) or ()):
                row.update(found)
        return rows

    def save_pretrained(self, path: str | Path) -> None:
        """Write the checkpoint folder (see the module docstring), whole or not at all: it is
        written beside ``path`` and then put in its place."""
        from safetensors.torch import save_file

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = scratch(path)
        tmp.mkdir(exist_ok=True)
        self.encoder.model.save_pretrained(str(tmp))
        self.tokenizer.save_pretrained(str(tmp))
        state = {k: v.detach().cpu().contiguous() for k, v in self.heads.state_dict().items()}
        save_file(state, str(tmp / HEADS_FILE))
        dump_config(self.cfg, tmp / CONFIG_FILE)
        if self.features.stats:
            save_stats(self.features.stats, tmp)
        replace_dir(tmp, path)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, map_location: str = "cpu") -> MultiTaskModel:
        """Load a checkpoint folder written by `save_pretrained`.

        Raises:
            CheckpointError: The folder is no mtl checkpoint, or a file of it is missing or corrupt.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(path)
        recover_dir(path)
        if not (path / CONFIG_FILE).is_file():
            raise CheckpointError(f"{path}: not an mtl checkpoint folder (no {CONFIG_FILE}); expected the "
                                  f"checkpoint/ folder of a run directory written by `mtl train`")
        try:
            cfg = load_config(path / CONFIG_FILE)
        except ConfigError as e:
            raise CheckpointError(f"{path}: its {CONFIG_FILE} does not load:\n{e}") from e
        backbone = lookup(BACKBONES, cfg.model.backbone, where=f"{path / CONFIG_FILE}: model.backbone")
        try:
            tokenizer = load_tokenizer(path, backbone)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"{path}: cannot load its tokenizer: {str(e).splitlines()[0]}") from e
        model = cls(cfg, Encoder.from_pretrained(cfg.model.backbone, path), tokenizer, feature_stats=load_stats(path))
        try:
            model.heads.load_state_dict(load_file(str(path / HEADS_FILE), device=map_location))
        except (OSError, SafetensorError, RuntimeError) as e:
            raise CheckpointError(f"{path / HEADS_FILE}: cannot load the task heads: {str(e).splitlines()[0]}") from e
        return model

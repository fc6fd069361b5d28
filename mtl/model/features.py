"""Glass-box features as head inputs: standardised, then concatenated to what a head reads.

Sentence features (``model_score``, ``lp_*``) go after the pooled sentence vector of the heads
that take them; word features (each MT word's log-prob), and a flag for words without one, go
after that word's vector (word_tags: its gaps then see their neighbours' features too). Each
feature's row in `mtl.catalogue.FEATURES` says which it is. The mean and
standard deviation come from the training split (`feature_stats`) and travel with the
checkpoint (`STATS_FILE`), so evaluation and prediction need no training data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mtl.catalogue import FEATURES
from mtl.config import RunConfig
from mtl.files import write_json
from mtl.model.heads.base import Encoded

STATS_FILE = "feature_stats.json"


def _word_level(names: tuple[str, ...]) -> bool:
    return any(FEATURES[n].level == "word" for n in names)


def feature_stats(columns: dict[str, list], cfg: RunConfig) -> dict[str, dict[str, float]]:
    """Mean and std of every feature the config feeds to a head, over the given rows.

    Args:
        columns: The training rows (all pairs trained on) as columns.
        cfg: The run's config.

    Returns:
        ``{name: {"mean": m, "std": s}}`` (std 1 where a feature is constant); NaN values
        (words without an NMT log-prob) are left out.
    """
    stats = {}
    for name in dict.fromkeys(n for names in cfg.feature_inputs().values() for n in names):
        values = columns[name]
        flat = np.array([v for row in values for v in row] if values and isinstance(values[0], list) else values,
                        dtype=float)
        flat = flat[~np.isnan(flat)]
        if flat.size == 0:
            raise ValueError(f"feature {name!r} has no value in the training rows")
        std = float(flat.std())
        stats[name] = {"mean": float(flat.mean()), "std": std if std > 0 else 1.0}
    return stats


def save_stats(stats: dict[str, dict[str, float]], folder: str | Path) -> None:
    """Write the statistics beside the checkpoint's weights."""
    write_json(Path(folder) / STATS_FILE, stats)


def load_stats(folder: str | Path) -> dict[str, dict[str, float]] | None:
    """The statistics saved with a checkpoint (None: it uses no features)."""
    path = Path(folder) / STATS_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


class GlassBox(nn.Module):
    """Standardises the features of the heads that take some and appends them to their inputs."""

    def __init__(self, cfg: RunConfig, stats: dict[str, dict[str, float]] | None) -> None:
        super().__init__()
        self.inputs = cfg.feature_inputs()
        names = list(dict.fromkeys(n for names in self.inputs.values() for n in names))
        missing = [n for n in names if n not in (stats or {})]
        if missing:
            raise ValueError(f"features {', '.join(missing)}: no standardisation statistics; they come from the "
                             f"training split (mtl.model.features.feature_stats) or a checkpoint's {STATS_FILE}")
        self.stats = {n: dict(stats[n]) for n in names} if stats else {}
        for n in names:  # buffers follow the model to its device; not saved in its state_dict
            self.register_buffer(f"mean_{n}", torch.tensor(self.stats[n]["mean"]), persistent=False)
            self.register_buffer(f"std_{n}", torch.tensor(self.stats[n]["std"]), persistent=False)

    def width(self, task: str) -> int:
        """Extra inputs of the task's head: one per feature, plus a missing-word flag at the word level."""
        names = self.inputs.get(task, ())
        return len(names) + (1 if _word_level(names) else 0)

    def _standard(self, name: str, values: torch.Tensor) -> torch.Tensor:
        return (values - getattr(self, f"mean_{name}")) / getattr(self, f"std_{name}")

    def forward(self, task: str, enc: Encoded) -> Encoded:
        """The encoder output as the task's head should see it (unchanged without features)."""
        names = self.inputs.get(task, ())
        if not names:
            return enc
        batch = enc.batch
        if _word_level(names):
            n = enc.words("mt").shape[1]
            values = torch.stack([self._standard(k, batch[k][:, :n]) for k in names], -1)  # [B, W, F]
            missing = torch.isnan(values[..., :1])
            words = torch.cat([values.nan_to_num(0.0), missing.to(values.dtype)], -1)
            return enc.with_inputs(mt_words=words)
        return enc.with_inputs(sentence=torch.stack([self._standard(k, batch[k]) for k in names], -1))

    def extra_repr(self) -> str:
        return ", ".join(f"{t}: {'+'.join(names)}" for t, names in self.inputs.items())


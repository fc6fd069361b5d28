"""Sentence-level regression: `da` (z-scored direct assessment) and `hter`. MSE loss."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from mtl import metrics as M
from mtl.config import ModelConfig
from mtl.model.heads.base import Encoded, Head, Submission, mlp
from mtl.rundir import prediction_file
from mtl.task_options import TaskConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit


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

    def score(self, split: PairSplit, preds: list[float]) -> dict[str, float] | None:
        gold = split.columns[self.name]
        rows = [i for i, g in enumerate(gold) if g is not None]
        return M.sentence_metrics([preds[i] for i in rows], [gold[i] for i in rows]) if rows else None

    def submission(self, split: PairSplit, preds: list[float], *, method: str) -> list[Submission]:
        """``LP<TAB>method<TAB>segment<TAB>score`` per segment at full precision, in
        `<task>/predictions.txt` (what the WMT20 `sent_evaluate.py` reads)."""
        index, lp = split.columns["index"], split.columns["lp"]
        return [(prediction_file(self.name), [f"{lp[i]}\t{method}\t{index[i]}\t{v!r}" for i, v in enumerate(preds)])]

    def outputs(self, enc: Encoded) -> list[dict[str, Any]]:
        return [{self.name: v} for v in self.predict(enc)]

    def combine(self, members: list[list[dict[str, Any]]], weights: list[float]) -> list[dict[str, Any]]:
        """The weighted mean of the members' scores."""
        return [{self.name: sum(w * r[self.name] for w, r in zip(weights, rows))} for rows in zip(*members)]

    def from_outputs(self, rows: list[dict[str, Any]]) -> list[float]:
        return [r[self.name] for r in rows]

"""Source word tags (OK/BAD): which source words were mistranslated or left out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch.nn import functional as F

from mtl import metrics as M
from mtl.config import ModelConfig
from mtl.model.heads.base import (
    Encoded,
    Head,
    Submission,
    bad_probabilities,
    combine_tags,
    full_length_tags,
    mlp,
    score_tags,
    tag_label,
    tag_values,
)
from mtl.rundir import WORD_LEVEL, prediction_file
from mtl.task_options import SourceTagsConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit


class SourceTags(Head):
    """Tags each kept source word."""

    cfg: SourceTagsConfig
    class_weight: torch.Tensor

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
        gold = gold[:, :w]
        if not (gold != -100).any():  # only words truncation cut are labelled
            return None
        return F.cross_entropy(logits.reshape(-1, 2), gold.reshape(-1), weight=self.class_weight, ignore_index=-100)

    def predict(self, enc: Encoded) -> list[list[int]]:
        tags = self.net(enc.words("src")).argmax(-1).tolist()
        return [tags[i][:n] for i, n in enumerate(enc.batch["n_src"].tolist())]

    def outputs(self, enc: Encoded) -> list[dict[str, Any]]:
        """Per row: the source words' tags and P(BAD) (truncated words: OK, NaN)."""
        logits = self.net(enc.words("src"))
        kept, full = enc.batch["n_src"].tolist(), enc.batch["n_src_words"].tolist()
        tags = logits.argmax(-1).tolist()
        return [{"src_tags": [tag_label(t) for t in full_length_tags(row[:k], n, gaps=False)], "src_bad": p}
                for row, k, n, p in zip(tags, kept, full, bad_probabilities(logits, kept, full))]

    def combine(self, members: list[list[dict[str, Any]]], weights: list[float]) -> list[dict[str, Any]]:
        """The source words' P(BAD) averaged, tagged BAD above 0.5."""
        return combine_tags(members, weights, "src")

    def from_outputs(self, rows: list[dict[str, Any]]) -> list[list[int]]:
        return [tag_values(row["src_tags"]) for row in rows]

    def score(self, split: PairSplit, preds: list[list[int]]) -> dict[str, float] | None:
        return score_tags(split, preds, side="src", gaps=False, metrics=M.tag_metrics)

    def submission(self, split: PairSplit, preds: list[list[int]], *, method: str) -> list[Submission]:
        """``LP<TAB>method<TAB>source<TAB>segment<TAB>word index<TAB>word<TAB>OK|BAD``, in
        `word/predictions_src.txt` (beside the MT tags, as the WMT20 `word_evaluate.py` reads them)."""
        cols, lines = split.columns, []
        for i, tags in enumerate(preds):
            words, seg, lp = cols["src"][i], cols["index"][i], cols["lp"][i]
            tags = full_length_tags(tags, len(words), gaps=False)
            lines += [f"{lp}\t{method}\tsource\t{seg}\t{j}\t{w}\t{tag_label(tags[j])}"
                      for j, w in enumerate(words)]
        return [(prediction_file(WORD_LEVEL, "src"), lines)]

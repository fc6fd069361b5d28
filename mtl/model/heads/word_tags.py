"""MT word and gap tags (OK/BAD). A gap's vector comes from its neighbour words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl import metrics as M
from mtl.config import ModelConfig
from mtl.model.heads.base import Encoded, Head, Submission, full_length_tags, mlp, score_tags, tag_label
from mtl.rundir import prediction_file
from mtl.task_options import WordTagsConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit


class WordTags(Head):
    """Tags each kept MT word and each gap around them; returns 2n+1 interleaved tags."""

    cfg: WordTagsConfig
    class_weight: torch.Tensor

    def __init__(self, name: str, cfg: WordTagsConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any, extra_inputs: int = 0) -> None:
        super().__init__(name, cfg, hidden_size=hidden_size, model_cfg=model_cfg, tokenizer=tokenizer)
        width = hidden_size + extra_inputs  # a word's vector, then its extra inputs (glass-box features)
        self.words = mlp(hidden_size, 2, model_cfg.dropout, inputs=width)
        self.edge = nn.Parameter(torch.zeros(width))  # stands in for the missing neighbour
        gap_inputs = 2 * width if cfg.gaps == "concat" else width
        self.gaps = mlp(hidden_size, 2, model_cfg.dropout, inputs=gap_inputs) if cfg.gaps != "none" else None
        self.register_buffer("class_weight", torch.tensor([1.0, cfg.bad_weight]), persistent=False)

    def _logits(self, enc: Encoded) -> tuple[torch.Tensor, torch.Tensor | None]:
        words = enc.words("mt")  # [B, W, H]
        word_logits = self.words(words).float()
        if self.gaps is None:
            return word_logits, None
        b, w, h = words.shape
        kept = enc.batch["n_mt"]
        edge = self.edge.to(words.dtype).expand(b, 1, h)
        padded = torch.cat([edge, words, edge.new_zeros(b, 1, h)], dim=1)  # [B, W+2, H]
        # the right neighbour of the last kept word's gap is the edge vector too
        padded[torch.arange(b), kept + 1] = edge[:, 0]
        left, right = padded[:, :w + 1], padded[:, 1:w + 2]
        gap_in = torch.cat([left, right], -1) if self.cfg.gaps == "concat" else (left + right) / 2
        return word_logits, self.gaps(gap_in).float()

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        word_gold, gap_gold = enc.batch["word_tags"], enc.batch["gap_tags"]
        if not (word_gold != -100).any():
            return None
        word_logits, gap_logits = self._logits(enc)
        w = word_logits.shape[1]
        loss = F.cross_entropy(word_logits.reshape(-1, 2), word_gold[:, :w].reshape(-1),
                               weight=self.class_weight, ignore_index=-100)
        if gap_logits is not None:
            loss = loss + F.cross_entropy(gap_logits.reshape(-1, 2), gap_gold[:, :w + 1].reshape(-1),
                                          weight=self.class_weight, ignore_index=-100)
        return loss

    def predict(self, enc: Encoded) -> list[list[int]]:
        word_logits, gap_logits = self._logits(enc)
        words = word_logits.argmax(-1).tolist()
        gaps = gap_logits.argmax(-1).tolist() if gap_logits is not None else None
        out = []
        for i, n in enumerate(enc.batch["n_mt"].tolist()):
            row_gaps = gaps[i][:n + 1] if gaps is not None else [0] * (n + 1)
            tags = [row_gaps[0]]
            for j in range(n):
                tags += [words[i][j], row_gaps[j + 1]]
            out.append(tags)
        return out

    def score(self, split: PairSplit, preds: list[list[int]]) -> dict[str, float] | None:
        return score_tags(split, preds, side="mt", gaps=True, metrics=M.mt_tag_metrics)

    def submission(self, split: PairSplit, preds: list[list[int]], *, method: str) -> Submission:
        """``pair<TAB>method<TAB>mt|gap<TAB>segment<TAB>index<TAB>word<TAB>OK|BAD``, in `word_tags.txt`."""
        cols, lines, pair = split.columns, [], split.pair
        for i, tags in enumerate(preds):
            words, seg = cols["mt"][i], cols["index"][i]
            tags = full_length_tags(tags, len(words), gaps=True)
            lines += [f"{pair}\t{method}\tmt\t{seg}\t{j}\t{word}\t{tag_label(tags[2 * j + 1])}"
                      for j, word in enumerate(words)]
            lines += [f"{pair}\t{method}\tgap\t{seg}\t{j}\tgap\t{tag_label(tags[2 * j])}"
                      for j in range(len(words) + 1)]
        return prediction_file(self.name), lines

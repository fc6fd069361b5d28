"""MT word and gap tags (OK/BAD). A gap's vector comes from its neighbour words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
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
        """Cross-entropy of the labelled words plus that of the labelled gaps; a batch whose rows
        label words but no gaps (a dataset without gap tags) has the word term only."""
        word_logits, gap_logits = self._logits(enc)
        w = word_logits.shape[1]
        word_gold, gap_gold = enc.batch["word_tags"][:, :w], enc.batch["gap_tags"][:, :w + 1]
        terms = []
        if (word_gold != -100).any():
            terms.append(F.cross_entropy(word_logits.reshape(-1, 2), word_gold.reshape(-1),
                                         weight=self.class_weight, ignore_index=-100))
        if gap_logits is not None and (gap_gold != -100).any():
            terms.append(F.cross_entropy(gap_logits.reshape(-1, 2), gap_gold.reshape(-1),
                                         weight=self.class_weight, ignore_index=-100))
        return sum(terms[1:], terms[0]) if terms else None

    def predict(self, enc: Encoded) -> list[list[int]]:
        word_logits, gap_logits = self._logits(enc)
        return self._interleave(word_logits, gap_logits, enc.batch["n_mt"].tolist())

    @staticmethod
    def _interleave(word_logits: torch.Tensor, gap_logits: torch.Tensor | None, kept: list[int]) -> list[list[int]]:
        """2n+1 tags per row: gap, word, gap, ..., word, gap (gaps OK without a gap head)."""
        words = word_logits.argmax(-1).tolist()
        gaps = gap_logits.argmax(-1).tolist() if gap_logits is not None else None
        out = []
        for i, n in enumerate(kept):
            row_gaps = gaps[i][:n + 1] if gaps is not None else [0] * (n + 1)
            tags = [row_gaps[0]]
            for j in range(n):
                tags += [words[i][j], row_gaps[j + 1]]
            out.append(tags)
        return out

    def outputs(self, enc: Encoded) -> list[dict[str, Any]]:
        """Per row: the MT words' tags and P(BAD), and the gaps' when the head tags gaps; words
        cut by truncation are tagged OK with P(BAD) NaN."""
        word_logits, gap_logits = self._logits(enc)
        kept, full = enc.batch["n_mt"].tolist(), enc.batch["n_mt_words"].tolist()
        tags = [full_length_tags(t, n, gaps=True)
                for t, n in zip(self._interleave(word_logits, gap_logits, kept), full)]
        word_bad = bad_probabilities(word_logits, kept, full)
        out: list[dict[str, Any]] = [{"mt_tags": [tag_label(t) for t in row[1::2]], "mt_bad": p}
                                     for row, p in zip(tags, word_bad)]
        if gap_logits is not None:
            gap_bad = bad_probabilities(gap_logits, [k + 1 for k in kept], [n + 1 for n in full])
            for row, values, p in zip(out, tags, gap_bad):
                row.update(gap_tags=[tag_label(t) for t in values[0::2]], gap_bad=p)
        return out

    def combine(self, members: list[list[dict[str, Any]]], weights: list[float]) -> list[dict[str, Any]]:
        """The MT words' (and gaps') P(BAD) averaged, tagged BAD above 0.5."""
        out = combine_tags(members, weights, "mt")
        if self.gaps is not None:
            for row, gaps in zip(out, combine_tags(members, weights, "gap")):
                row.update(gaps)
        return out

    def from_outputs(self, rows: list[dict[str, Any]]) -> list[list[int]]:
        """2n+1 interleaved tags (gaps OK when the head tags none)."""
        out = []
        for row in rows:
            words = tag_values(row["mt_tags"])
            gaps = tag_values(row["gap_tags"]) if "gap_tags" in row else [M.OK] * (len(words) + 1)
            out.append([t for pair in zip(gaps, words) for t in pair] + gaps[-1:])
        return out

    def score(self, split: PairSplit, preds: list[list[int]]) -> dict[str, float] | None:
        return score_tags(split, preds, side="mt", gaps=True, metrics=M.mt_tag_metrics)

    def submission(self, split: PairSplit, preds: list[list[int]], *, method: str) -> list[Submission]:
        """``LP<TAB>method<TAB>mt|gap<TAB>segment<TAB>index<TAB>word<TAB>OK|BAD``: the MT words
        in `word/predictions_mt.txt`, the gaps (when the head tags them) in
        `word/predictions_gaps.txt`, as the WMT20 `word_evaluate.py` reads them."""
        cols, words_out, gaps_out = split.columns, [], []
        for i, tags in enumerate(preds):
            words, seg, lp = cols["mt"][i], cols["index"][i], cols["lp"][i]
            tags = full_length_tags(tags, len(words), gaps=True)
            words_out += [f"{lp}\t{method}\tmt\t{seg}\t{j}\t{word}\t{tag_label(tags[2 * j + 1])}"
                          for j, word in enumerate(words)]
            gaps_out += [f"{lp}\t{method}\tgap\t{seg}\t{j}\tgap\t{tag_label(tags[2 * j])}"
                         for j in range(len(words) + 1)]
        files = [(prediction_file(WORD_LEVEL, "mt"), words_out)]
        return [*files, (prediction_file(WORD_LEVEL, "gaps"), gaps_out)] if self.gaps is not None else files

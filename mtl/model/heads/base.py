"""What every task head sees: the shared encoder's output for one batch."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from mtl import metrics as M
from mtl.config import ModelConfig
from mtl.model.pooling import pool_words
from mtl.task_options import TaskConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit

Submission = tuple[str, list[str]]
"""A submission file's name and its lines."""


@dataclass
class Encoded:
    """The shared encoder's output for a batch, plus lazily pooled word vectors."""

    hidden: torch.Tensor
    """[batch, tokens, hidden]."""
    pooled: torch.Tensor
    """[batch, hidden]: the family's sentence vector."""
    batch: dict[str, torch.Tensor]
    """The collated batch."""
    word_pooling: str
    """first / mean / max."""
    encode: Callable[[torch.Tensor], torch.Tensor]
    """Re-run the shared encoder on other input ids (same mask), e.g. masked for MLM."""
    generator: torch.Generator | None = None
    """Random source for evaluation-time draws (None in training: the global RNG)."""
    _words: dict[str, torch.Tensor] = field(default_factory=dict)

    def words(self, side: str) -> torch.Tensor:
        """Word vectors of ``"src"`` or ``"mt"``: [batch, words, hidden]."""
        if side not in self._words:
            n = int(self.batch[f"n_{side}"].max().item()) if self.batch[f"n_{side}"].numel() else 0
            self._words[side] = pool_words(self.hidden, self.batch[f"{side}_word"], n, self.word_pooling)
        return self._words[side]

    def with_inputs(self, *, sentence: torch.Tensor | None = None, mt_words: torch.Tensor | None = None) -> Encoded:
        """A copy whose pooled vector ([batch, F]) and/or MT word vectors ([batch, words, F])
        have extra inputs appended, e.g. glass-box features."""
        pooled, words = self.pooled, dict(self._words)
        if sentence is not None:
            pooled = torch.cat([pooled, sentence.to(pooled.dtype)], -1)
        if mt_words is not None:
            words["mt"] = torch.cat([self.words("mt"), mt_words.to(self.hidden.dtype)], -1)
        return dataclasses.replace(self, pooled=pooled, _words=words)


class Head(nn.Module):
    """A task head: a loss on the batch's labelled rows, per-row predictions, their scores and
    their lines in the WMT20 QE submission format. `mtl.evaluate` loops over heads and asks."""

    def __init__(self, name: str, cfg: TaskConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any) -> None:
        super().__init__()
        self.name = name
        self.cfg = cfg

    def init_from_encoder(self, embeddings: nn.Embedding) -> None:
        """Start from the (pretrained) encoder's input embeddings where useful (a decoder); no-op here."""

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        """Mean loss over the rows that have this task's label; None when none has."""
        raise NotImplementedError

    def predict(self, enc: Encoded) -> list[Any]:
        """One prediction per row of the batch, in batch order."""
        raise NotImplementedError

    def score(self, split: PairSplit, preds: list[Any]) -> dict[str, float] | None:
        """The metrics of a split's predictions on the rows with a gold label (None: no row has
        one); the keys are those of the task's row in `mtl.catalogue.TASKS`."""
        raise NotImplementedError

    def submission(self, split: PairSplit, preds: list[Any], *, method: str) -> list[Submission]:
        """The WMT20 QE submission files of a split's predictions ([]: the task submits nothing)."""
        return []

    def outputs(self, enc: Encoded) -> list[dict[str, Any]] | None:
        """What `mtl predict` writes per row of the batch ({column: value}), in batch order;
        None: the task has no per-segment output (nothing is computed)."""
        return None

    def combine(self, members: list[list[dict[str, Any]]], weights: list[float]) -> list[dict[str, Any]] | None:
        """An ensemble's outputs per segment from its members' (`outputs` rows, one list per
        member, best-ranked first; ``weights`` sum to 1); None: the task has none to combine."""
        return None

    def from_outputs(self, rows: list[dict[str, Any]]) -> list[Any]:
        """The predictions `predict` would give (what `score` and `submission` take) from
        per-segment outputs (`outputs` or `combine` rows)."""
        raise NotImplementedError(f"{type(self).__name__} has no per-segment outputs")


def full_length_tags(pred: list[int], n_words: int, *, gaps: bool) -> list[int]:
    """Pad the tags of truncated words with OK (the majority class) to the full sentence."""
    want = 2 * n_words + 1 if gaps else n_words
    return list(pred) + [M.OK] * (want - len(pred))


def bad_probabilities(logits: torch.Tensor, kept: list[int], full: list[int]) -> list[list[float]]:
    """Per row, P(BAD) of its first ``kept`` positions, then NaN up to ``full`` (cut by truncation)."""
    probs = logits.float().softmax(-1)[..., M.BAD].tolist()
    return [row[:k] + [math.nan] * (n - k) for row, k, n in zip(probs, kept, full)]


def mean_probabilities(lists: list[list[float]], weights: list[float]) -> list[float]:
    """Position by position, the weighted mean of the members' probabilities over those that
    have one (NaN: a word truncation cut for that member; NaN where every member lacks it)."""
    out = []
    for values in zip(*lists):
        seen = [(w, v) for w, v in zip(weights, values) if not math.isnan(v)]
        total = sum(w for w, _ in seen)
        out.append(sum(w * v for w, v in seen) / total if seen and total > 0 else math.nan)
    return out


def combine_tags(members: list[list[dict[str, Any]]], weights: list[float], side: str) -> list[dict[str, Any]]:
    """``<side>_bad`` averaged over the members, ``<side>_tags`` BAD where that is above 0.5 (what
    the argmax of two classes is); a word no member tagged stays OK with P(BAD) NaN."""
    out = []
    for rows in zip(*members):
        bad = mean_probabilities([r[f"{side}_bad"] for r in rows], weights)
        out.append({f"{side}_tags": [tag_label(M.BAD if p > 0.5 else M.OK) for p in bad], f"{side}_bad": bad})
    return out


def tag_values(labels: list[str]) -> list[int]:
    """The tags of `tag_label`'s words."""
    return [M.BAD if t == "BAD" else M.OK for t in labels]


def score_tags(split: PairSplit, preds: list[list[int]], *, side: str, gaps: bool,
               metrics: Callable[[list[list[int]], list[list[int]]], dict[str, float]]) -> dict[str, float] | None:
    """Tag metrics of one side (``mt`` with its gaps, or ``src``) on the rows with gold tags, the
    tags of truncated words predicted OK, and how many words truncation cut."""
    cols = split.columns
    rows = [i for i, g in enumerate(cols[f"{side}_tags"]) if g is not None]
    if not rows:
        return None
    pred = [full_length_tags(preds[i], len(cols[side][i]), gaps=gaps) for i in rows]
    scores = metrics(pred, [cols[f"{side}_tags"][i] for i in rows])
    return {**scores, "truncated_words": float(split.truncated_words()[side])}


def tag_label(tag: int) -> str:
    """OK or BAD, as the submission files write a tag."""
    return "BAD" if tag == M.BAD else "OK"


def mlp(hidden_size: int, out: int, dropout: float, *, inputs: int | None = None) -> nn.Sequential:
    """The small two-layer head used by sentence and tag tasks."""
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(inputs or hidden_size, hidden_size), nn.Tanh(),
                         nn.Dropout(dropout), nn.Linear(hidden_size, out))

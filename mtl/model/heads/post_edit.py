"""Seq2seq head: a small Transformer decoder over the shared encoder.

mode ``post_edit`` reads src + mt and writes pe; mode ``translate`` reads only src (the mt
tokens are masked out of the decoder's memory) and writes pe.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F

from mtl import metrics as M
from mtl.config import ModelConfig
from mtl.model.heads.base import Encoded, Head, Submission
from mtl.rundir import prediction_file
from mtl.task_options import PostEditConfig

if TYPE_CHECKING:
    from mtl.data.dataset import PairSplit


class PostEdit(Head):
    """Decoder with its own embeddings (initialised from the encoder's when sizes match)."""

    cfg: PostEditConfig

    def __init__(self, name: str, cfg: PostEditConfig, *, hidden_size: int, model_cfg: ModelConfig,
                 tokenizer: Any) -> None:
        super().__init__(name, cfg, hidden_size=hidden_size, model_cfg=model_cfg, tokenizer=tokenizer)
        self.tokenizer = tokenizer
        self.pad, self.bos, self.eos = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id
        vocab = len(tokenizer)
        self.embed = nn.Embedding(vocab, hidden_size, padding_idx=self.pad)
        self.positions = nn.Embedding(cfg.max_length, hidden_size)
        layer = nn.TransformerDecoderLayer(hidden_size, cfg.heads, 4 * hidden_size, model_cfg.dropout,
                                           batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, cfg.layers, norm=nn.LayerNorm(hidden_size))
        self.out = nn.Linear(hidden_size, vocab)

    def init_from_encoder(self, embeddings: nn.Embedding) -> None:
        """Start the decoder's embeddings from the (pretrained) encoder's."""
        if embeddings.weight.shape == self.embed.weight.shape:
            with torch.no_grad():
                self.embed.weight.copy_(embeddings.weight)

    def _memory_padding(self, enc: Encoded) -> torch.Tensor:
        ignore = enc.batch["attention_mask"] == 0
        if self.cfg.mode == "translate":
            ignore = ignore | (enc.batch["seq"] == 1)
        return ignore

    def _logits(self, tokens: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        pos = torch.arange(n, device=tokens.device)
        x = self.embed(tokens) * math.sqrt(self.embed.embedding_dim) + self.positions(pos)
        causal = torch.ones(n, n, dtype=torch.bool, device=tokens.device).triu(1)
        y = self.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True,
                         tgt_key_padding_mask=tokens == self.pad, memory_key_padding_mask=memory_pad)
        return self.out(y).float()

    def loss(self, enc: Encoded) -> torch.Tensor | None:
        target = enc.batch["pe_ids"]
        has = target[:, 0] != self.pad
        if not has.any() or target.shape[1] < 2:
            return None
        target = target[has]
        logits = self._logits(target[:, :-1], enc.hidden[has], self._memory_padding(enc)[has])
        gold = target[:, 1:].masked_fill(target[:, 1:] == self.pad, -100)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), gold.reshape(-1), ignore_index=-100,
                               label_smoothing=self.cfg.label_smoothing)

    def predict(self, enc: Encoded) -> list[list[str]]:
        memory, memory_pad = enc.hidden, self._memory_padding(enc)
        # a post-edit is rarely much longer than the MT (or, translating, the source)
        side = 1 if self.cfg.mode == "post_edit" else 0
        limit = min(self.cfg.max_length, int(1.5 * int((enc.batch["seq"] == side).sum(1).max())) + 10)
        if self.cfg.decoding == "greedy":
            rows = self._greedy(memory, memory_pad, limit)
        else:
            rows = [self._beam(memory[i:i + 1], memory_pad[i:i + 1], limit) for i in range(memory.shape[0])]
        return [self.tokenizer.decode(r, skip_special_tokens=True).split() for r in rows]

    def _greedy(self, memory: torch.Tensor, memory_pad: torch.Tensor, limit: int) -> list[list[int]]:
        b = memory.shape[0]
        tokens = torch.full((b, 1), self.bos, dtype=torch.long, device=memory.device)
        done = torch.zeros(b, dtype=torch.bool, device=memory.device)
        for _ in range(limit - 1):
            nxt = self._logits(tokens, memory, memory_pad)[:, -1].argmax(-1)
            nxt = nxt.masked_fill(done, self.pad)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == self.eos
            if done.all():
                break
        return [[t for t in row[1:] if t not in (self.pad, self.eos)] for row in tokens.tolist()]

    def _beam(self, memory: torch.Tensor, memory_pad: torch.Tensor, limit: int) -> list[int]:
        k = self.cfg.beam_size
        alive = [([self.bos], 0.0)]
        finished: list[tuple[list[int], float]] = []
        for _ in range(limit - 1):
            tokens = torch.tensor([seq for seq, _ in alive], device=memory.device)
            n = tokens.shape[0]
            logp = F.log_softmax(self._logits(tokens, memory.expand(n, -1, -1), memory_pad.expand(n, -1))[:, -1], -1)
            scores = torch.tensor([s for _, s in alive], device=memory.device)[:, None] + logp
            top = scores.view(-1).topk(min(k, scores.numel()))
            alive = []
            for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                seq = [*tokens[flat // logp.shape[1]].tolist(), flat % logp.shape[1]]
                (finished if seq[-1] == self.eos else alive).append((seq, score))
            if len(finished) >= k or not alive:
                break
        best = max(finished or alive, key=lambda item: item[1] / len(item[0]))
        return [t for t in best[0][1:] if t != self.eos]

    def score(self, split: PairSplit, preds: list[list[str]]) -> dict[str, float] | None:
        """BLEU, chrF and TER of the post-edits, beside the same for the untouched MT."""
        cols = split.columns
        rows = [i for i, g in enumerate(cols["pe"]) if g]
        if not rows:
            return None
        return M.post_edit_metrics([" ".join(preds[i]) for i in rows], [" ".join(cols["pe"][i]) for i in rows],
                                   mt=[" ".join(cols["mt"][i]) for i in rows])

    def submission(self, split: PairSplit, preds: list[list[str]], *, method: str) -> list[Submission]:
        """One output per line, in `<task>/predictions.txt`."""
        return [(prediction_file(self.name), [" ".join(words) for words in preds])]

    def outputs(self, enc: Encoded) -> list[dict[str, Any]]:
        return [{self.name: " ".join(words)} for words in self.predict(enc)]

    def combine(self, members: list[list[dict[str, Any]]], weights: list[float]) -> list[dict[str, Any]]:
        """The best-ranked member's text (texts do not average)."""
        return [{self.name: row[self.name]} for row in members[0]]

    def from_outputs(self, rows: list[dict[str, Any]]) -> list[list[str]]:
        return [row[self.name].split() for row in rows]

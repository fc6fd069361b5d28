"""Subword vectors -> word vectors (first / mean / max subword)."""

from __future__ import annotations

import torch


def pool_words(hidden: torch.Tensor, word_idx: torch.Tensor, num_words: int, mode: str) -> torch.Tensor:
    """Pool each word's subword vectors.

    Args:
        hidden: Encoder output, [batch, tokens, hidden].
        word_idx: Word index of each token in the sequence being pooled, -1 for other tokens.
        num_words: Width of the output (the longest sentence of the batch, in words).
        mode: ``"first"``, ``"mean"`` or ``"max"``.

    Returns:
        [batch, num_words, hidden]; words without a token (truncated, padding) are zeros.
    """
    b, _, h = hidden.shape
    valid = word_idx >= 0
    flat = (torch.arange(b, device=hidden.device)[:, None] * num_words + word_idx.clamp(min=0))[valid]
    vecs = hidden[valid]
    out = hidden.new_zeros(b * max(num_words, 1), h)
    if mode == "first":
        prev = torch.cat([word_idx.new_full((b, 1), -1), word_idx[:, :-1]], dim=1)
        first = (word_idx != prev)[valid]
        out = out.index_copy(0, flat[first], vecs[first])
    elif mode == "mean":
        out = out.index_add(0, flat, vecs)
        counts = hidden.new_zeros(out.shape[0]).index_add(0, flat, hidden.new_ones(flat.shape[0]))
        out = out / counts.clamp(min=1)[:, None]
    elif mode == "max":
        out = out.fill_(float("-inf")).scatter_reduce(0, flat[:, None].expand(-1, h), vecs, "amax")
        out = torch.where(torch.isinf(out), torch.zeros_like(out), out)
    else:
        raise ValueError(f"word pooling must be first, mean or max, got {mode!r}")
    return out.view(b, max(num_words, 1), h)[:, :num_words] if num_words else out.view(b, 1, h)[:, :0]

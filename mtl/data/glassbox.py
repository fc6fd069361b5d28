"""Glass-box features: what the NMT system thought of its own output, per sentence and word.

MLQE-PE gives, for each MT output, the NMT system's tokens (``word-probas/mt.*``: BPE pieces
with ``@@`` continuation marks, or SentencePiece pieces with ``▁`` word starts for si-en) and
one log-prob per token plus one for ``<eos>`` (``word-probas/word_probas.*``).

The tokens are not always the MT words of the post-editing files merged back: they are
Moses-escaped (``&quot;``, ``&apos;``, ``&#91;``), hyphens are split (``well @-@ known``), and
SentencePiece output is detokenized (``Buddha,`` against ``Buddha ,``). So words are aligned
to tokens by characters: with the marks removed and the escapes undone, the tokens' characters
and the words' characters are the same string on a line, and a word gets every token that
covers one of its characters. Where the strings differ (on a few si-en lines the NMT output
is another sentence), the line's words get no log-prob (NaN): the model sees them as missing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mtl.catalogue import LOGPROB_FEATURES

# Moses escapes and aggressive-hyphen marks, undone before comparing characters.
_UNESCAPE = (("&quot;", '"'), ("&apos;", "'"), ("&#91;", "["), ("&#93;", "]"), ("&#124;", "|"),
             ("&lt;", "<"), ("&gt;", ">"), ("@-@", "-"), ("@/@", "/"), ("&amp;", "&"))
_BPE_MARK = "@@"
_SP_MARK = "\u2581"  # SentencePiece's word-start mark


def merge_pieces(tokens: Sequence[str]) -> list[str]:
    """Merge NMT pieces into words: BPE (``Legi@@ on``) or SentencePiece (``▁Legi on``).

    The strict reading of the tokens, with no unescaping: ``alignment_stats`` counts the
    lines where it does not give the MT words.
    """
    words: list[str] = []
    if any(t.startswith(_SP_MARK) for t in tokens):
        for t in tokens:
            if t.startswith(_SP_MARK) or not words:
                words.append(t.removeprefix(_SP_MARK))
            else:
                words[-1] += t
        return [w for w in words if w]
    joining = False
    for t in tokens:
        piece = t.removesuffix(_BPE_MARK)
        if joining:
            words[-1] += piece
        else:
            words.append(piece)
        joining = t.endswith(_BPE_MARK)
    return words


def _plain(token: str) -> str:
    text = token.removesuffix(_BPE_MARK).replace(_SP_MARK, "")
    for escaped, char in _UNESCAPE:
        text = text.replace(escaped, char)
    return text


def align_words(tokens: Sequence[str], words: Sequence[str]) -> list[list[int]] | None:
    """The NMT tokens of each MT word, by characters; None when the texts differ.

    Args:
        tokens: The NMT tokens of one line.
        words: The MT words of the same line.

    Returns:
        Per word, the indices of the tokens that cover at least one of its characters (in
        order; a token spanning two words belongs to both; a token left with no character,
        like a bare SentencePiece ``▁``, goes with the next token), or None when the
        unescaped characters of the tokens and of the words are not the same string.
    """
    plain = [_plain(t) for t in tokens]
    if "".join(plain) != "".join(words):
        return None
    owners: list[list[int]] = []  # character -> its tokens
    pending: list[int] = []  # tokens with no character (a bare "▁"): they go with the next one
    for i, text in enumerate(plain):
        if not text:
            pending.append(i)
            continue
        owners += [[*pending, i]] + [[i] for _ in text[1:]]
        pending = []
    if pending and owners:  # trailing empty tokens go with the last character
        owners[-1] += pending
    out, start = [], 0
    for word in words:
        out.append(sorted({i for chars in owners[start:start + len(word)] for i in chars}))
        start += len(word)
    return out


def word_logprobs(tokens: Sequence[str], logprobs: Sequence[float], words: Sequence[str]) -> list[float]:
    """Each MT word's log-prob: the sum over its NMT tokens; NaN for every word of a line
    whose NMT text differs from the MT."""
    alignment = align_words(tokens, words)
    if alignment is None:
        return [math.nan] * len(words)
    return [sum(logprobs[i] for i in token_ids) for token_ids in alignment]


def sentence_features(logprobs: Sequence[float], n_words: int, *, low_logprob: float) -> dict[str, float]:
    """The aggregates of one line's token log-probs (``<eos>`` included), named as
    `mtl.config.LOGPROB_FEATURES`: mean, min, (population) std, sum per MT word, share
    of tokens under ``low_logprob``."""
    n = len(logprobs)
    mean = sum(logprobs) / n
    values = {
        "lp_mean": mean,
        "lp_min": min(logprobs),
        "lp_std": math.sqrt(sum((x - mean) ** 2 for x in logprobs) / n),
        "lp_sum_per_word": sum(logprobs) / max(n_words, 1),
        "lp_low_share": sum(x < low_logprob for x in logprobs) / n,
    }
    assert tuple(values) == LOGPROB_FEATURES
    return values


@dataclass(frozen=True)
class AlignmentStats:
    """How the NMT tokens of a split line up with its MT words."""

    lines: int
    """Segments."""
    words: int
    """MT words."""
    merge_differs: int
    """Lines where merging the pieces (no unescaping) does not give the MT words."""
    unaligned_lines: int
    """Lines whose NMT text differs from the MT even by characters: their words get NaN."""
    unaligned_words: int
    """MT words on those lines."""


def alignment_stats(records: Sequence[dict]) -> AlignmentStats:
    """Count, over records read with ``read_pair(..., word_probas=True)``, the lines where
    the pieces do not merge into the MT words, and the words left without a log-prob."""
    merge_differs = unaligned_lines = unaligned_words = 0
    for r in records:
        merge_differs += merge_pieces(r["nmt_tokens"]) != r["mt"]
        if align_words(r["nmt_tokens"], r["mt"]) is None:
            unaligned_lines += 1
            unaligned_words += len(r["mt"])
    return AlignmentStats(lines=len(records), words=sum(len(r["mt"]) for r in records),
                          merge_differs=merge_differs, unaligned_lines=unaligned_lines,
                          unaligned_words=unaligned_words)

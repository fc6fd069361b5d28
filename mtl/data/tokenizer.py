"""Tokenizers: trained on the training text with `tokenizers` for a family built from
config, or loaded with the checkpoint for a pretrained one."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtl.files import publish, scratch
from mtl.model.backbones import Backbone

log = logging.getLogger(__name__)


def train_tokenizer(backbone: Backbone, texts: Iterable[list[str]], *, vocab_size: int):
    """Train a tokenizer of the family's kind on pre-split words, the same in every process.

    The `tokenizers` trainers iterate over words in a hash map's order, which differs from one
    process to the next: `WordPieceTrainer` numbers its ``##c`` pieces in that order (and breaks
    ties between merges by those numbers); `UnigramTrainer` sums and sorts in it. So:

    - wordpiece: the ``##c`` pieces are numbered up front, in character order (passed as extra
      special tokens, then turned back into plain vocabulary);
    - bpe: `BpeTrainer` is already deterministic (its alphabet is sorted, ties go to the lower ids);
    - unigram: the pieces are those a BPE trainer picks on the same text, scored by a unigram
      language model fitted on the corpus in a fixed order (hard EM: Viterbi segmentation,
      recount, ``UNIGRAM_ROUNDS`` times).

    Args:
        backbone: The family row (tokenizer kind, special tokens, templates).
        texts: Sentences as word lists.
        vocab_size: Target vocabulary size.

    Returns:
        A `PreTrainedTokenizerFast` that pads on the family's side and returns the inputs
        the family's encoder takes.
    """
    from tokenizers import Tokenizer, normalizers
    from tokenizers.processors import TemplateProcessing

    sp = backbone.specials
    specials = [sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]]
    lines = [normalizers.NFC().normalize_str(" ".join(words)) for words in texts]
    model = {"wordpiece": _wordpiece, "bpe": _bpe, "unigram": _unigram}[backbone.tokenizer](
        lines, specials, sp["unk"], vocab_size)
    tok = Tokenizer(model)
    _pipeline(tok, backbone.tokenizer)
    ids = {role: tok.token_to_id(token) for role, token in sp.items()}
    special_pairs = [(token, ids[role]) for role, token in sp.items() if role in ("cls", "sep")]
    tok.post_processor = TemplateProcessing(
        single=backbone.single_template, pair=backbone.pair_template, special_tokens=special_pairs)
    return wrap_tokenizer(backbone, tok)


UNIGRAM_ROUNDS = 3
"""Hard-EM rounds that score the unigram pieces."""


def _pipeline(tok: Any, kind: str) -> None:
    """The normalizer, pre-tokenizer and decoder of a tokenizer kind."""
    from tokenizers import decoders, normalizers, pre_tokenizers

    tok.normalizer = normalizers.NFC()
    if kind == "wordpiece":
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece(cleanup=False)
    elif kind == "bpe":
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=True), decoders.ByteLevel()
    else:
        tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()


def _wordpiece(lines: list[str], specials: list[str], unk: str, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.WordPiece(unk_token=unk, max_input_chars_per_word=100))
    _pipeline(tok, "wordpiece")
    inner = sorted({c for line in lines for word, _ in tok.pre_tokenizer.pre_tokenize_str(line) for c in word[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials + [f"##{c}" for c in inner],
                                        show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    return models.WordPiece(vocab=tok.get_vocab(with_added_tokens=False), unk_token=unk, max_input_chars_per_word=100)


def _bpe(lines: list[str], specials: list[str], unk: str, vocab_size: int, kind: str = "bpe") -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=unk))
    _pipeline(tok, kind)
    alphabet = pre_tokenizers.ByteLevel.alphabet() if kind == "bpe" else []
    tok.train_from_iterator(lines, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False))
    return tok.model


def _unigram(lines: list[str], specials: list[str], unk: str, vocab_size: int) -> Any:
    from tokenizers import Tokenizer, models

    bpe = Tokenizer(_bpe(lines, specials, unk, vocab_size, kind="unigram"))
    _pipeline(bpe, "unigram")
    vocab = bpe.get_vocab(with_added_tokens=False)
    pieces = [p for p in sorted(vocab, key=vocab.__getitem__) if p not in specials]
    tok = bpe
    for _ in range(UNIGRAM_ROUNDS):
        counts = Counter(t for enc in tok.encode_batch(lines, add_special_tokens=False) for t in enc.tokens)
        total = sum(counts[p] for p in pieces) or 1
        scored = [(p, math.log(max(counts[p], 0.5) / total)) for p in pieces]  # unseen: half a count
        model = models.Unigram([(s, 0.0) for s in specials] + scored, unk_id=specials.index(unk), byte_fallback=False)
        tok = Tokenizer(model)
        _pipeline(tok, "unigram")
    return model


def wrap_tokenizer(backbone: Backbone, tok):
    """Wrap a `tokenizers.Tokenizer` as the generic fast tokenizer (not BertTokenizer & co:
    those rebuild the pipeline and lowercase or strip accents)."""
    from transformers import PreTrainedTokenizerFast

    sp = backbone.specials
    inputs = ["input_ids", "attention_mask"] + (["token_type_ids"] if backbone.uses_token_type_ids else [])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=sp["pad"], unk_token=sp["unk"], cls_token=sp["cls"],
        sep_token=sp["sep"], mask_token=sp["mask"], model_input_names=inputs,
        padding_side=backbone.padding_side, clean_up_tokenization_spaces=False)


def load_tokenizer(path: str | Path, backbone: Backbone):
    """Load a tokenizer saved with a run or shipped with a pretrained checkpoint."""
    from transformers import AutoTokenizer

    kwargs = {"add_prefix_space": True} if backbone.tokenizer == "bpe" else {}
    tok = AutoTokenizer.from_pretrained(str(path), **kwargs)
    if not tok.is_fast:
        raise ValueError(f"{path}: needs a fast tokenizer (tokenizer.json) for word alignment")
    tok.padding_side = backbone.padding_side
    return tok


def cached_tokenizer(backbone: Backbone, texts: list[list[str]], *, vocab_size: int, cache_dir: Path):
    """Train a tokenizer once per (family, vocab size, text) and reuse it from the cache."""
    digest = hashlib.sha256()
    digest.update(json.dumps([backbone.model_type, backbone.tokenizer, vocab_size, "v2"]).encode())
    for words in texts:
        digest.update(" ".join(words).encode())
        digest.update(b"\n")
    where = cache_dir / "tokenizers" / digest.hexdigest()[:20]
    if (where / "tokenizer.json").exists():
        return load_tokenizer(where, backbone)
    log.info("training a %s tokenizer (vocab %d) on %d sentences", backbone.tokenizer, vocab_size, len(texts))
    tok = train_tokenizer(backbone, texts, vocab_size=vocab_size)
    tmp = scratch(where)
    tok.save_pretrained(str(tmp))
    publish(tmp, where)  # a parallel trial may have trained it too: everyone reads the one published
    return load_tokenizer(where, backbone)

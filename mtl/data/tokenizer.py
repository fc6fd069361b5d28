"""Tokenizers: trained on the training text with `tokenizers` for a family built from
config, or loaded with the checkpoint for a pretrained one."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mtl.files import publish, scratch
from mtl.model.backbones import Backbone

log = logging.getLogger(__name__)


def train_tokenizer(backbone: Backbone, texts: Iterable[list[str]], *, vocab_size: int):
    """Train a tokenizer of the family's kind on pre-split words.

    Args:
        backbone: The family row (tokenizer kind, special tokens, templates).
        texts: Sentences as word lists.
        vocab_size: Target vocabulary size.

    Returns:
        A `PreTrainedTokenizerFast` that pads on the family's side and returns the inputs
        the family's encoder takes.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from tokenizers.processors import TemplateProcessing

    sp = backbone.specials
    trainer: Any
    special_list = [sp["pad"], sp["unk"], sp["cls"], sp["sep"], sp["mask"]]
    if backbone.tokenizer == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=sp["unk"], max_input_chars_per_word=100))
        tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        tok.decoder = decoders.WordPiece(cleanup=False)
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                            show_progress=False)
    elif backbone.tokenizer == "bpe":
        tok = Tokenizer(models.BPE(unk_token=sp["unk"]))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    else:  # unigram
        tok = Tokenizer(models.Unigram())
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=special_list,
                                          unk_token=sp["unk"], show_progress=False)
    tok.normalizer = normalizers.NFC()
    tok.train_from_iterator((" ".join(words) for words in texts), trainer=trainer)
    ids = {role: tok.token_to_id(token) for role, token in sp.items()}
    special_pairs = [(token, ids[role]) for role, token in sp.items() if role in ("cls", "sep")]
    tok.post_processor = TemplateProcessing(
        single=backbone.single_template, pair=backbone.pair_template, special_tokens=special_pairs)
    return wrap_tokenizer(backbone, tok)


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
    digest.update(json.dumps([backbone.model_type, backbone.tokenizer, vocab_size, "v1"]).encode())
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

"""Encoder families as rows of a table. One encoder class reads the row; no class per family.

Adding a family (xlm-roberta, distilbert, electra, ...) is one row: its transformers
`model_type`, where the sentence vector is read, padding side, tokenizer kind, special
tokens, and the names its config gives to the sizes we search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Backbone:
    """How one encoder family is built, tokenized and pooled."""

    model_type: str
    """transformers `model_type` of the family's config (AutoConfig.for_model)."""
    pool: Literal["first", "last"]
    """Token whose vector is the sentence vector: first ([CLS]/<s>) or last (XLNet's <cls>)."""
    padding_side: Literal["right", "left"]
    """Side padding goes on (left for last-token pooling)."""
    tokenizer: Literal["wordpiece", "bpe", "unigram"]
    """Tokenizer trained on the training text when building from config."""
    specials: dict[str, str]
    """Special tokens by role: pad, unk, cls, sep, mask (cls/sep double as decoder bos/eos)."""
    single_template: str
    """`tokenizers` TemplateProcessing template for one sequence."""
    pair_template: str
    """Template for a (src, mt) pair; `:1` marks segment ids."""
    size_keys: dict[str, str]
    """Our size names -> the family config's attribute names."""
    uses_token_type_ids: bool = True
    """Whether the family's encoder takes token_type_ids."""
    position_offset: int = 0
    """Extra position embeddings the family needs beyond max_length (RoBERTa: 2)."""
    extra_config: dict[str, object] = field(default_factory=dict)
    """Fixed config values when building from config."""


_BERT_SIZES = {
    "hidden_size": "hidden_size",
    "num_layers": "num_hidden_layers",
    "num_heads": "num_attention_heads",
    "intermediate_size": "intermediate_size",
    "dropout": "hidden_dropout_prob",
    "max_positions": "max_position_embeddings",
}

BACKBONES: dict[str, Backbone] = {
    "bert": Backbone(
        model_type="bert", pool="first", padding_side="right", tokenizer="wordpiece",
        specials={"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"},
        single_template="[CLS] $A [SEP]",
        pair_template="[CLS] $A [SEP] $B:1 [SEP]:1",
        size_keys=_BERT_SIZES,
        extra_config={"type_vocab_size": 2},
    ),
    "roberta": Backbone(
        model_type="roberta", pool="first", padding_side="right", tokenizer="bpe",
        specials={"pad": "<pad>", "unk": "<unk>", "cls": "<s>", "sep": "</s>", "mask": "<mask>"},
        single_template="<s> $A </s>",
        pair_template="<s> $A </s> </s> $B </s>",
        size_keys=_BERT_SIZES,
        uses_token_type_ids=False,
        position_offset=2,
        extra_config={"type_vocab_size": 1},
    ),
    "xlnet": Backbone(
        model_type="xlnet", pool="last", padding_side="left", tokenizer="unigram",
        specials={"pad": "<pad>", "unk": "<unk>", "cls": "<cls>", "sep": "<sep>", "mask": "<mask>"},
        single_template="$A <sep> <cls>:2",
        pair_template="$A <sep> $B:1 <sep>:1 <cls>:2",
        size_keys={
            "hidden_size": "d_model",
            "num_layers": "n_layer",
            "num_heads": "n_head",
            "intermediate_size": "d_inner",
            "dropout": "dropout",
        },
    ),
}

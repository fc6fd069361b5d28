"""Task heads: a registry of small classes, one file each."""

from mtl.model.heads.base import Encoded, Head
from mtl.model.heads.mlm import MaskedLM
from mtl.model.heads.post_edit import PostEdit
from mtl.model.heads.regression import SentenceRegression
from mtl.model.heads.source_tags import SourceTags
from mtl.model.heads.word_tags import WordTags

TASKS: dict[str, type[Head]] = {
    "da": SentenceRegression,
    "hter": SentenceRegression,
    "word_tags": WordTags,
    "source_tags": SourceTags,
    "post_edit": PostEdit,
    "mlm": MaskedLM,
}

__all__ = ["TASKS", "Encoded", "Head", "MaskedLM", "PostEdit", "SentenceRegression", "SourceTags", "WordTags"]

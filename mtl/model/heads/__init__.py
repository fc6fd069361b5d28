"""Task heads, one small class per file; the rows of `mtl.catalogue.TASKS` name them."""

from mtl.model.heads.base import Encoded, Head
from mtl.model.heads.mlm import MaskedLM
from mtl.model.heads.post_edit import PostEdit
from mtl.model.heads.regression import SentenceRegression
from mtl.model.heads.source_tags import SourceTags
from mtl.model.heads.word_tags import WordTags

__all__ = ["Encoded", "Head", "MaskedLM", "PostEdit", "SentenceRegression", "SourceTags", "WordTags"]

"""Segments of a data source -> tokenized `datasets.Dataset` per dataset and split (cached), batches.

Each row keeps its raw words and labels (for word-level scoring and predictions) next to
the subword columns: `input_ids`, `token_type_ids`, `src_word` / `mt_word` (the word each
subword belongs to, -1 for none), `seq` (0 src, 1 mt, -1 special) and `pe_ids`. When the
config's glass-box features need the NMT log-probs, also their sentence aggregates
(`lp_*`) and `mt_logprob` (one per MT word, NaN where the word has no NMT token).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl.catalogue import LOGPROB_FEATURES, SENTENCE_TASKS
from mtl.config import FeaturesConfig
from mtl.data.glassbox import alignment_stats, sentence_features, word_logprobs
from mtl.data.parse import DataError
from mtl.data.sources import DataSource
from mtl.files import publish, scratch
from mtl.model.backbones import Backbone

log = logging.getLogger(__name__)

_FORMAT_VERSION = "4"  # bump when the encoded columns change (4: lp and id columns)
_GLASS_BOX_VERSION = "1"  # bump when the glass-box columns change


@dataclass
class PairSplit:
    """One pair's split: its rows as columns (lists) ready for batching."""

    pair: str
    split: str
    columns: dict[str, list[Any]]
    dataset: Any  # datasets.Dataset, kept for users and the cache

    def __len__(self) -> int:
        return len(self.columns["input_ids"])

    def truncated_words(self) -> dict[str, int]:
        """Words that lost their tags to `max_length` truncation, for MT and source."""
        cols = self.columns
        return {
            "mt": sum(len(w) - k for w, k in zip(cols["mt"], cols["n_mt_kept"])),
            "src": sum(len(w) - k for w, k in zip(cols["src"], cols["n_src_kept"])),
        }


def default_cache_dir(configured: str | None) -> Path:
    """The cache folder: the config's, else $MTL_CACHE, else ~/.cache/mtl."""
    return Path(configured or os.environ.get("MTL_CACHE") or Path.home() / ".cache" / "mtl")


def load_pair_split(source: DataSource, name: str, split: str, *, tokenizer, backbone: Backbone,
                    max_length: int, pe_max_length: int, cache_dir: Path,
                    max_samples: int | None = None, features: FeaturesConfig | None = None) -> PairSplit:
    """Read, tokenize and cache one dataset's split.

    Args:
        source: Where the dataset is and how to read it (`DataConfig.source`).
        name: The dataset's name (an MLQE-PE pair, e.g. ``"en-de"``, or a name of ``data.datasets``).
        split: ``"train"``, ``"dev"`` or ``"test"``.
        tokenizer: A fast tokenizer (word alignment needs `word_ids`).
        backbone: The encoder family row.
        max_length: Encoder input length in subwords (src + mt).
        pe_max_length: Decoder target length in subwords.
        cache_dir: Cache root.
        max_samples: Keep only the first N segments.
        features: The glass-box features asked for: with logprobs or word features, the
            NMT log-probs are read and their columns added.

    Returns:
        The split, its columns in memory.

    Raises:
        mtl.data.parse.DataError: A data file is missing or malformed, or a glass-box feature
            asked for has no data in this dataset and split.
    """
    import datasets

    low = features.low_logprob if features is not None and features.needs_logprobs else None
    logprobs = low is not None
    fingerprint = _fingerprint(source.identity(name, split), tokenizer, max_length, pe_max_length, low)
    where = cache_dir / "data" / f"{name}-{split}-{fingerprint}"
    if (where / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(where))
    else:
        records = source.read(name, split, word_probas=logprobs)
        if logprobs:
            stats = alignment_stats(records)
            log.info("%s %s: NMT tokens of %d of %d lines do not merge into the MT words; %d lines (%d of %d "
                     "words) differ by characters: those words get no log-prob", name, split, stats.merge_differs,
                     stats.lines, stats.unaligned_lines, stats.unaligned_words, stats.words)
        ds = datasets.Dataset.from_dict(encode_records(records, tokenizer=tokenizer, max_length=max_length,
                                                       pe_max_length=pe_max_length, low_logprob=low))
        tmp = scratch(where)
        ds.save_to_disk(str(tmp))
        publish(tmp, where)
        ds = datasets.load_from_disk(str(where))
    if max_samples is not None and max_samples < len(ds):
        ds = ds.select(range(max_samples))
    columns = ds[:]
    if not backbone.uses_token_type_ids:
        columns.pop("token_type_ids", None)
    if features is not None and features.sentence in ("model_score", "all") and None in columns["model_score"]:
        why = f"features.sentence {features.sentence!r} reads the NMT system's sentence score"
        try:
            source.check(name, split, need_da=True)  # names the missing file or column where there is one
        except DataError as e:
            raise DataError(f"{e} ({why}: model_scores)") from e
        missing = columns["model_score"].index(None)
        raise DataError(f"{name} {split}: segment {missing} (0-based) and {columns['model_score'].count(None) - 1} "
                        f"more have no model_score, expected one per segment: {why} (MLQE-PE: the "
                        f"direct-assessments TSV's model_scores; a table: its model_score column)")
    return PairSplit(pair=name, split=split, columns=columns, dataset=ds)


def _fingerprint(identity: str, tokenizer, max_length: int, pe_max_length: int, low_logprob: float | None) -> str:
    digest = hashlib.sha256(identity.encode())
    digest.update(tokenizer.backend_tokenizer.to_str().encode())
    digest.update(json.dumps([max_length, pe_max_length, tokenizer.padding_side, _FORMAT_VERSION]).encode())
    if low_logprob is not None:  # the glass-box columns (none: the same key as before they existed)
        digest.update(json.dumps(["glass-box", low_logprob, _GLASS_BOX_VERSION]).encode())
    return digest.hexdigest()[:20]


def encode_records(records: Sequence[dict], *, tokenizer, max_length: int, pe_max_length: int,
                   low_logprob: float | None = None) -> dict[str, list]:
    """Tokenize (src, mt) pairs as split words and keep each subword's word index; with
    ``low_logprob`` (records read with ``word_probas``), add the glass-box columns."""
    src = [r["src"] for r in records]
    mt = [r["mt"] for r in records]
    enc = tokenizer(src, mt, is_split_into_words=True, truncation=True, max_length=max_length)
    cols: dict[str, list] = {key: [r[key] for r in records] for key in
                             ("pair", "index", "src", "mt", "pe", "da", "hter", "model_score",
                              "mt_tags", "src_tags")}
    cols["lp"] = [r.get("lp") or r["pair"] for r in records]
    cols["id"] = [r.get("id") for r in records]
    cols["input_ids"] = enc["input_ids"]
    cols["token_type_ids"] = enc.get("token_type_ids", [[0] * len(x) for x in enc["input_ids"]])
    cols.update(src_word=[], mt_word=[], seq=[], n_src_kept=[], n_mt_kept=[])
    for i in range(len(records)):
        words, seqs = enc.word_ids(i), enc.sequence_ids(i)
        cols["seq"].append([-1 if s is None else s for s in seqs])
        cols["src_word"].append([w if s == 0 else -1 for w, s in zip(words, seqs)])
        cols["mt_word"].append([w if s == 1 else -1 for w, s in zip(words, seqs)])
        truncated = len(enc["input_ids"][i]) >= max_length
        cols["n_src_kept"].append(_kept(words, seqs, 0, len(records[i]["src"]), truncated=truncated))
        cols["n_mt_kept"].append(_kept(words, seqs, 1, len(records[i]["mt"]), truncated=truncated))
    bos, eos = tokenizer.cls_token_id, tokenizer.sep_token_id
    has_pe = [i for i, r in enumerate(records) if r["pe"]]
    pe_enc = tokenizer([records[i]["pe"] for i in has_pe], is_split_into_words=True,
                       add_special_tokens=False, truncation=True, max_length=pe_max_length - 2)
    cols["pe_ids"] = [[] for _ in records]
    for i, ids in zip(has_pe, pe_enc["input_ids"] if has_pe else []):
        cols["pe_ids"][i] = [bos, *ids, eos]
    if low_logprob is not None:
        sentence = [sentence_features(r["nmt_logprobs"], len(r["mt"]), low_logprob=low_logprob) for r in records]
        cols.update({name: [s[name] for s in sentence] for name in LOGPROB_FEATURES})
        cols["mt_logprob"] = [word_logprobs(r["nmt_tokens"], r["nmt_logprobs"], r["mt"]) for r in records]
    return cols


def _kept(words: list[int | None], seqs: list[int | None], side: int, n_words: int, *, truncated: bool) -> int:
    """How many leading words of one side keep their place (and tag) after truncation.

    A word can have no subword without being truncated: a tokenizer may normalise it away
    (BERT's uncased WordPiece drops control characters such as a stray U+0096). It keeps its
    place (its pooled vector is zeros) so the words after it stay aligned with their tags.
    Truncation only cuts the end of a side, so the kept words run up to the last one with a
    subword; a pair that was not cut (shorter than max_length) keeps every word. (A pair that
    fills max_length exactly counts as cut: a last word without a subword there is counted lost.)
    """
    if not truncated:
        return n_words
    return max((w + 1 for w, s in zip(words, seqs) if s == side and w is not None), default=0)


def batch_order(lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int,
                bucket: int = 50) -> list[list[int]]:
    """Shuffled, length-bucketed batches: a pure function of (seed, epoch).

    Segments are shuffled, cut into chunks of ``bucket`` batches, sorted by length inside a
    chunk (so a batch pads little), batched, and the batches shuffled again.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    chunk = batch_size * bucket
    batches: list[list[int]] = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: lengths[i])
        batches.extend([int(i) for i in part[j:j + batch_size]] for j in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def eval_order(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Evaluation batches, sorted by length (fast), covering every row once."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def collate(columns: dict[str, list], rows: Sequence[int], *, pad_id: int,
            padding_side: str) -> dict[str, torch.Tensor]:
    """Pad one batch of rows (dynamic padding to the longest row in the batch).

    Missing sentence labels are NaN; missing or truncated tags are -100 (ignored by the loss).
    """
    def pad(seqs: list[list[int]], value: int, side: str = padding_side) -> torch.Tensor:
        width = max((len(s) for s in seqs), default=0)
        out = torch.full((len(seqs), max(width, 1)), value, dtype=torch.long)
        for i, s in enumerate(seqs):
            if s:
                if side == "left":
                    out[i, width - len(s):] = torch.tensor(s)
                else:
                    out[i, :len(s)] = torch.tensor(s)
        return out

    def take(key: str) -> list:
        return [columns[key][i] for i in rows]

    ids = take("input_ids")
    batch = {
        "input_ids": pad(ids, pad_id),
        "attention_mask": pad([[1] * len(s) for s in ids], 0),
        "src_word": pad(take("src_word"), -1),
        "mt_word": pad(take("mt_word"), -1),
        "seq": pad(take("seq"), -1),
    }
    if "token_type_ids" in columns:
        batch["token_type_ids"] = pad(take("token_type_ids"), 0)
    for key in (*SENTENCE_TASKS, "model_score", *(k for k in LOGPROB_FEATURES if k in columns)):
        batch[key] = torch.tensor([math.nan if v is None else float(v) for v in take(key)])
    n_mt, n_src = take("n_mt_kept"), take("n_src_kept")
    batch["n_mt"], batch["n_src"] = torch.tensor(n_mt), torch.tensor(n_src)
    batch["n_mt_words"] = torch.tensor([len(w) for w in take("mt")])
    batch["n_src_words"] = torch.tensor([len(w) for w in take("src")])
    if "mt_logprob" in columns:  # one per kept MT word, NaN-padded on the right
        width = max(n_mt, default=0)
        batch["mt_logprob"] = torch.full((len(rows), width), math.nan)
        for i, (values, kept) in enumerate(zip(take("mt_logprob"), n_mt)):
            batch["mt_logprob"][i, :kept] = torch.tensor(values[:kept], dtype=torch.float)
    word_tags, gap_tags, src_tags = [], [], []
    for tags, kept in zip(take("mt_tags"), n_mt):
        word_tags.append(list(tags[1::2][:kept]) if tags else [-100] * kept)
        gap_tags.append(list(tags[0::2][:kept + 1]) if tags else [-100] * (kept + 1))
    for tags, kept in zip(take("src_tags"), n_src):
        src_tags.append(list(tags[:kept]) if tags else [-100] * kept)
    # word-indexed and decoder tensors always pad on the right
    batch["word_tags"] = pad(word_tags, -100, "right")
    batch["gap_tags"] = pad(gap_tags, -100, "right")
    batch["src_tags"] = pad(src_tags, -100, "right")
    batch["pe_ids"] = pad(take("pe_ids"), pad_id, "right")
    return batch

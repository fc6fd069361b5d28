"""The domain facts, one row each: tasks (their options, head, metrics and each metric's
direction, the primary metric) and the glass-box features. Everything else asks these rows.

The trainer, the search and the reports all read a metric's direction here, and a new head is
one row (plus its file under `mtl/model/heads/`). Light: no torch; a head class is imported
only when a model is built. Weighting strategies are rows of `mtl.weighting.WEIGHTINGS`,
encoder families rows of `mtl.model.backbones.BACKBONES`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from mtl.config_loader import Problem, unknown_key
from mtl.registry import load_object
from mtl.task_options import (
    MLMConfig,
    PostEditConfig,
    RegressionTaskConfig,
    SourceTagsConfig,
    TaskConfig,
    WordTagsConfig,
)

__all__ = ["FEATURES", "LOGPROB_FEATURES", "SENTENCE_FEATURES", "SENTENCE_TASKS", "TASKS", "WORD_FEATURES",
           "Direction", "Feature", "Task", "metric_direction", "metric_problem"]

Direction = Literal["maximize", "minimize"]
MAX: Direction = "maximize"
MIN: Direction = "minimize"


@dataclass(frozen=True)
class Task:
    """One task head: how it is configured, built, scored and fed."""

    options: type[TaskConfig]
    """Its options (the `tasks.<name>` block of a config)."""
    head: str
    """``module:Class`` of its head (a `mtl.model.heads.base.Head`), imported when a model is built."""
    metrics: Mapping[str, Direction]
    """Every metric the head's `score` reports, and whether higher or lower is better."""
    primary: str | None
    """The metric it adds to the default objective (None: it adds none)."""
    primary_scale: float = 1.0
    """Weight of the primary metric in the default objective (chrF lives on 0-100: 0.01)."""
    level: Literal["sentence", "word", "text", "none"] = "sentence"
    """What it predicts per segment: a score (its predictions file: one score per segment, which
    the reports resample and ensemble), tags per word, a text, or nothing to submit."""
    features: Literal["sentence", "word"] | None = None
    """Which glass-box features its head can take: sentence ones (after the pooled vector) or
    word ones (after each MT word's vector)."""
    auxiliary: bool = False
    """Trains the encoder but is no QE task of its own (a config needs a QE task beside it)."""
    label: str | None = None
    """The segment field it learns from (`mtl.data.mlqe.MlqeSource.read`'s keys; None: the text itself)."""
    doc: str = ""

    def head_class(self) -> Any:
        """The head class (imports torch)."""
        return load_object(self.head)


def _tag_metrics(prefix: str = "") -> dict[str, Direction]:
    return {f"{prefix}{m}": MAX for m in ("mcc", "f1_ok", "f1_bad", "f1_mult")}


_SENTENCE: dict[str, Direction] = {"pearson": MAX, "spearman": MAX, "mae": MIN, "rmse": MIN}

TASKS: dict[str, Task] = {
    "da": Task(RegressionTaskConfig, "mtl.model.heads.regression:SentenceRegression", _SENTENCE, "pearson",
               features="sentence", label="da", doc="z-scored direct assessment of the translation (sentence level)"),
    "hter": Task(RegressionTaskConfig, "mtl.model.heads.regression:SentenceRegression", _SENTENCE, "pearson",
                 features="sentence", label="hter", doc="human-targeted TER of the post-edit (sentence level)"),
    "word_tags": Task(WordTagsConfig, "mtl.model.heads.word_tags:WordTags",
                      {**_tag_metrics("words_"), **_tag_metrics("gaps_"), **_tag_metrics("all_"),
                       "truncated_words": MIN}, "all_mcc", level="word", features="word",
                      label="mt_tags", doc="OK/BAD tags of the MT words and of the gaps between them"),
    "source_tags": Task(SourceTagsConfig, "mtl.model.heads.source_tags:SourceTags",
                        {**_tag_metrics(), "truncated_words": MIN}, "mcc", level="word",
                        label="src_tags", doc="OK/BAD tags of the source words"),
    "post_edit": Task(PostEditConfig, "mtl.model.heads.post_edit:PostEdit",
                      {"bleu": MAX, "chrf": MAX, "ter": MIN, "mt_bleu": MAX, "mt_chrf": MAX, "mt_ter": MIN},
                      "chrf", primary_scale=0.01, level="text",
                      label="pe", doc="a decoder that writes the post-edit (or the translation)"),
    "mlm": Task(MLMConfig, "mtl.model.heads.mlm:MaskedLM", {"accuracy": MAX}, None, level="none", auxiliary=True,
                doc="masked LM on the task text (task-adaptive pretraining)"),
}
"""Task name -> its row."""
SENTENCE_TASKS = tuple(name for name, row in TASKS.items() if row.level == "sentence")
"""The tasks that predict one score per segment."""


def metric_direction(name: str) -> Direction:
    """Whether higher or lower is better for ``task.metric``.

    Raises:
        KeyError: Not a metric of a known task (its message says what is).
    """
    problem = metric_problem(name, TASKS)
    if problem is not None:
        raise KeyError(problem.line("").lstrip(": "))
    task, _, metric = name.partition(".")
    return TASKS[task].metrics[metric]


def metric_problem(name: Any, enabled: Iterable[str], *, path: str = "") -> Problem | None:
    """What is wrong with ``task.metric`` as an objective over the ``enabled`` tasks (None: nothing)."""
    enabled = list(enabled)
    if not isinstance(name, str) or name.count(".") != 1 or not all(name.split(".")):
        return Problem(path, f"must be 'task.metric', e.g. 'da.pearson', got {name!r}")
    task, metric = name.split(".")
    if task not in TASKS:
        problem = unknown_key(task, enabled, "the enabled tasks", path=path)
        return Problem(path, f"unknown task {task!r} in {name!r}", problem.hint, kind="unknown")
    if task not in enabled:
        return Problem(path, f"task {task!r} is not enabled", f"enabled: {', '.join(enabled)}", reads=("tasks",))
    if metric not in TASKS[task].metrics:
        problem = unknown_key(metric, TASKS[task].metrics, f"task {task}", path=path)
        return Problem(path, f"task {task!r} reports no metric {metric!r}", problem.hint, kind="unknown")
    return None


# --- glass-box features --------------------------------------------------------------------


@dataclass(frozen=True)
class Feature:
    """One glass-box feature: what the NMT system thought of its own output."""

    level: Literal["sentence", "word"]
    """One value per segment, or one per MT word (NaN where the word has no NMT token)."""
    logprobs: bool = True
    """Computed from the NMT token log-probs (`word-probas/` of the DA tarballs)."""
    doc: str = ""


FEATURES: dict[str, Feature] = {
    "model_score": Feature("sentence", logprobs=False, doc="the DA TSV's model_scores"),
    "lp_mean": Feature("sentence", doc="mean NMT token log-prob (<eos> included)"),
    "lp_min": Feature("sentence", doc="lowest NMT token log-prob"),
    "lp_std": Feature("sentence", doc="standard deviation of the NMT token log-probs"),
    "lp_sum_per_word": Feature("sentence", doc="summed log-prob per MT word"),
    "lp_low_share": Feature("sentence", doc="share of NMT tokens under features.low_logprob"),
    "mt_logprob": Feature("word", doc="an MT word's summed NMT token log-prob"),
}
"""Feature name (a column of the tokenized data) -> its row."""

LOGPROB_FEATURES = tuple(n for n, f in FEATURES.items() if f.level == "sentence" and f.logprobs)
"""The sentence features computed from the NMT log-probs (mtl/data/glassbox.py)."""
SENTENCE_FEATURES: dict[str, tuple[str, ...]] = {
    "none": (),
    "model_score": ("model_score",),
    "logprobs": LOGPROB_FEATURES,
    "all": ("model_score", *LOGPROB_FEATURES),
}
"""The values of `features.sentence` -> the features they feed."""
WORD_FEATURES = tuple(n for n, f in FEATURES.items() if f.level == "word")
"""What `features.word: true` feeds."""

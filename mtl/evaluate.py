"""Predict a split, score it (each head scores its own task), write the predictions in the
WMT20 QE submission formats (each head writes its own lines)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from mtl import metrics as M
from mtl.catalogue import metric_direction
from mtl.data.dataset import PairSplit, collate, eval_order
from mtl.data.sources import DataSource
from mtl.files import write_text
from mtl.model.heads.base import Head

EVAL_SEED = 1234  # evaluation draws (MLM masking) use their own generator, never the training RNG

Metrics = dict[str, dict[str, dict[str, float]]]
"""``{pair: {task: {metric: value}}}``."""


def predict_split(model: Any, split: PairSplit, *, batch_size: int, device: torch.device,
                  autocast: Callable[[], Any]) -> dict[str, list]:
    """Every task's predictions for every row of the split, in row order."""
    was_training = model.training
    model.eval()
    tok = model.tokenizer
    out: dict[str, list] = {name: [None] * len(split) for name in model.heads}
    lengths = [len(x) for x in split.columns["input_ids"]]
    generator = torch.Generator().manual_seed(EVAL_SEED)
    try:
        for rows in eval_order(lengths, batch_size):
            batch = collate(split.columns, rows, pad_id=tok.pad_token_id, padding_side=tok.padding_side)
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast():
                preds = model.predict(batch, generator=generator)
            for name, values in preds.items():
                for row, value in zip(rows, values):
                    out[name][row] = value
    finally:
        model.train(was_training)
    return out


def score_split(split: PairSplit, preds: Mapping[str, list], heads: Mapping[str, Head]) -> dict[str, dict[str, float]]:
    """Each task's metrics on the rows that have its gold label (a task no row has is left out)."""
    scores = {}
    for task, values in preds.items():
        found = heads[task].score(split, values)
        if found is not None:
            scores[task] = found
    return scores


def write_predictions(split: PairSplit, preds: Mapping[str, list], out_dir: str | Path, heads: Mapping[str, Head], *,
                      method: str = "mtl") -> list[Path]:
    """Write each task's WMT20 QE submission files for one pair and split (each whole or not at all)."""
    out = Path(out_dir)
    written = []
    for task, values in preds.items():
        for name, lines in heads[task].submission(split, values, method=method):
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            write_text(out / name, "".join(line + "\n" for line in lines))
            written.append(out / name)
    return written


def model_score_floor(data: str | Path | DataSource, pair: str, split: str = "dev", *,
                      max_samples: int | None = None) -> float:
    """The zero-training floor: Pearson of the NMT system's own ``model_scores`` with DA ``z_mean``.

    Args:
        data: The MLQE-PE root, or the dataset's source (`DataConfig.source`).
        pair: A language pair such as ``"ro-en"`` (the dataset's name).
        split: The split scored.
        max_samples: Only the first N segments: the rows a run with ``data.max_eval_samples=N``
            is scored on (None: all).

    Returns:
        The Pearson correlation over those segments that have a DA score.

    Raises:
        ValueError: ``max_samples`` is below 1.
        mtl.data.mlqe.DataError: The files cannot be read, or fewer than 2 of the segments have a DA score.
    """
    from mtl.data.mlqe import MlqeSource
    from mtl.data.parse import DataError

    if max_samples is not None and max_samples < 1:
        raise ValueError(f"`max_samples >= 1` must hold (or None), but got max_samples={max_samples}")
    source = MlqeSource(root=str(data)) if isinstance(data, (str, Path)) else data
    rows = [r for r in source.read(pair, split)[:max_samples] if r["da"] is not None and r["model_score"] is not None]
    if len(rows) < 2:
        raise DataError(f"{pair} {split}: {len(rows)} of the first {max_samples or 'all'} segments have a DA "
                        "score and the NMT model_score, expected at least 2 (a direct-assessments tarball)")
    return M.sentence_metrics([r["model_score"] for r in rows], [r["da"] for r in rows])["pearson"]


def objective(metrics: Metrics, terms: Mapping[str, float]) -> float:
    """Weighted sum of "task.metric" terms, averaged over pairs; lower-is-better terms (by their
    row in `mtl.catalogue`) count negatively. NaN when a term is missing or NaN (the run then
    counts as worst)."""
    per_pair = []
    for pair_metrics in metrics.values():
        total = 0.0
        for key, weight in terms.items():
            task, metric = key.split(".")
            value = pair_metrics.get(task, {}).get(metric, math.nan)
            total += (-weight if metric_direction(key) == "minimize" else weight) * value
        per_pair.append(total)
    return sum(per_pair) / len(per_pair) if per_pair else math.nan

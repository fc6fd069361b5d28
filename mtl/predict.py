"""Score or predict with a saved run (what `mtl evaluate` and `mtl predict` call)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from mtl.data.dataset import PairSplit, default_cache_dir, load_pair_split
from mtl.device import pick_device
from mtl.evaluate import Metrics, objective, predict_split, score_split, write_predictions
from mtl.model.multitask import MultiTaskModel

__all__ = ["predict_to_files", "score_run"]


def _split(model: MultiTaskModel, root: str, pair: str, split: str, max_samples: int | None) -> PairSplit:
    cfg = model.cfg
    return load_pair_split(root, pair, split, tokenizer=model.tokenizer, backbone=model.encoder.backbone,
                           max_length=cfg.model.max_length, cache_dir=default_cache_dir(cfg.data.cache_dir),
                           pe_max_length=cfg.target_tokens, max_samples=max_samples, features=cfg.features)


def score_run(model: MultiTaskModel, *, root: str, split: str, pairs: list[str], max_samples: int | None = None,
              device: str | None = None) -> dict:
    """{"objective": v, "metrics": {pair: {task: {metric: value}}}} of a loaded run, on the
    first `max_samples` segments of each pair (None: all), on ``device`` (default: the run's
    ``train.device``)."""
    where = pick_device(device or model.cfg.train.device)
    model.to(where)
    metrics: Metrics = {}
    for pair in pairs:
        data = _split(model, root, pair, split, max_samples)
        preds = predict_split(model, data, batch_size=model.cfg.train.eval_batch_size, device=where,
                              autocast=contextlib.nullcontext)
        metrics[pair] = score_split(data, preds, model.task_heads)
    return {"objective": objective(metrics, model.cfg.objective_terms()), "metrics": metrics}


def predict_to_files(model: MultiTaskModel, *, root: str, pair: str, split: str, out: str | Path,
                     method: str = "mtl", max_samples: int | None = None, device: str | None = None) -> list[Path]:
    """Write the WMT-format prediction files of every task for one pair and split."""
    where = pick_device(device or model.cfg.train.device)
    model.to(where)
    data = _split(model, root, pair, split, max_samples)
    preds = predict_split(model, data, batch_size=model.cfg.train.eval_batch_size, device=where,
                          autocast=contextlib.nullcontext)
    return write_predictions(data, preds, out, model.task_heads, method=method)

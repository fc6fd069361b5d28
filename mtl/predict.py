"""Score or predict with a saved run (what `mtl evaluate` and `mtl predict` call)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from mtl.data.dataset import default_cache_dir, load_pair_split
from mtl.evaluate import objective, predict_split, score_split, write_predictions
from mtl.model.multitask import MultiTaskModel


def _split(model: MultiTaskModel, root: str, pair: str, split: str, max_samples: int | None):
    cfg = model.cfg
    return load_pair_split(root, pair, split, tokenizer=model.tokenizer, backbone=model.encoder.backbone,
                           max_length=cfg.model.max_length, cache_dir=default_cache_dir(cfg.data.cache_dir),
                           pe_max_length=getattr(cfg.tasks.get("post_edit"), "max_length", 128),
                           max_samples=max_samples, features=cfg.features)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def score_run(model: MultiTaskModel, *, root: str, split: str, pairs: list[str],
              max_samples: int | None = None) -> dict:
    """{"objective": v, "metrics": {pair: {task: {metric: value}}}} of a loaded run, on the
    first `max_samples` segments of each pair (None: all)."""
    device = _device()
    model.to(device)
    metrics = {}
    for pair in pairs:
        data = _split(model, root, pair, split, max_samples)
        preds = predict_split(model, data, batch_size=model.cfg.train.eval_batch_size, device=device,
                              autocast=contextlib.nullcontext)
        metrics[pair] = score_split(data, preds)
    return {"objective": objective(metrics, model.cfg.objective_terms()), "metrics": metrics}


def predict_to_files(model: MultiTaskModel, *, root: str, pair: str, split: str, out: str | Path,
                     method: str = "mtl", max_samples: int | None = None) -> list[Path]:
    """Write the WMT-format prediction files of every task for one pair and split."""
    device = _device()
    model.to(device)
    data = _split(model, root, pair, split, max_samples)
    preds = predict_split(model, data, batch_size=model.cfg.train.eval_batch_size, device=device,
                          autocast=contextlib.nullcontext)
    return write_predictions(data, preds, out, method=method)

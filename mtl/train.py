"""The training loop: set up, loop, evaluate, report, checkpoint. Read it top to bottom.

`train(cfg, out_dir=...)` knows nothing of Ray or Optuna: a search passes a `report`
callback, which is called after every evaluation and may raise to stop the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import torch

from mtl.config import RunConfig, dump_config, load_config, to_dict
from mtl.data.dataset import PairSplit, batch_order, collate, default_cache_dir, load_pair_split
from mtl.data.mlqe import read_pair
from mtl.data.tokenizer import cached_tokenizer, load_tokenizer
from mtl.evaluate import objective, predict_split, score_split, write_predictions
from mtl.model.backbones import BACKBONES
from mtl.model.checkpoints import resolve_pretrained
from mtl.model.features import feature_stats
from mtl.model.multitask import MultiTaskModel
from mtl.registry import lookup
from mtl.weighting import WEIGHTINGS

log = logging.getLogger(__name__)

STATE_FILE = "trainer_state.pt"


class TrainingDiverged(FloatingPointError):
    """A task loss became NaN or infinite."""


class Report(Protocol):
    """Called after each evaluation; a search uses it to record and prune."""

    def __call__(self, *, step: int, objective: float, metrics: dict[str, Any], checkpoint: Path,
                 final: bool) -> None:
        """`final`: this is the run's last evaluation (last step, or an early stop)."""


@dataclass
class TrainState:
    """Where the loop is: all of it goes into the resumable checkpoint."""

    step: int = 0
    epoch: int = 0
    pos: int = 0  # batches of the current epoch already consumed
    best_objective: float | None = None
    best_step: int | None = None
    best_metrics: dict | None = None
    evals_since_best: int = 0
    stopped_early: bool = False


def lr_factor(step: int, *, warmup: int, total: int) -> float:
    """Linear warm-up to 1, then linear decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, (total - step) / max(1, total - warmup))


def train(cfg: RunConfig, *, out_dir: str | Path, report: Report | None = None,
          resume: bool = True) -> dict[str, Any]:
    """Train, evaluate every `train.eval_every` steps, keep the best checkpoint.

    Args:
        cfg: The run's config.
        out_dir: Run directory (config.yaml, checkpoint/, last/, metrics.json,
            history.jsonl, predictions/).
        report: Called after each evaluation.
        resume: Continue from ``out_dir/last`` when it holds a run of the same config.

    Returns:
        The content of metrics.json: best step, objective and ``{pair: {task: {metric: v}}}``.

    Raises:
        TrainingDiverged: A loss became NaN or infinite.
        ValueError: ``out_dir`` holds a run of another config.
    """
    started = time.monotonic()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_run_dir(cfg, out, resume)
    dump_config(cfg, out / "config.yaml", header="# Resolved trainer config: python -m mtl train --config this-file\n")
    _seed_everything(cfg.train.seed)
    device = _pick_device(cfg.train.device)
    autocast, scaler = _precision(cfg.train.precision, device)

    # --- data and model -----------------------------------------------------------------
    backbone = lookup(BACKBONES, cfg.model.backbone, where="model.backbone")
    cache = default_cache_dir(cfg.data.cache_dir)
    tokenizer = _tokenizer(cfg, backbone, cache)
    load = partial(load_pair_split, cfg.data.root, tokenizer=tokenizer, backbone=backbone,
                   max_length=cfg.model.max_length, cache_dir=cache, features=cfg.features,
                   pe_max_length=getattr(cfg.tasks.get("post_edit"), "max_length", 128))
    train_cols = _concat([load(p, cfg.data.train_split, max_samples=cfg.data.max_train_samples)
                          for p in cfg.data.pairs])
    eval_splits = {p: load(p, cfg.data.eval_split, max_samples=cfg.data.max_eval_samples) for p in cfg.data.pairs}
    for pair, split in eval_splits.items():
        lost = split.truncated_words()
        if lost["mt"] or lost["src"]:
            log.warning("%s %s: max_length %d truncates %d MT and %d source words (tagged OK, counted in "
                        "truncated_words)", pair, cfg.data.eval_split, cfg.model.max_length, lost["mt"], lost["src"])

    stats = feature_stats(train_cols, cfg)  # glass-box features: standardised with training statistics only
    torch.manual_seed(cfg.train.seed)
    model = MultiTaskModel.build(cfg, tokenizer, feature_stats=stats).to(device)
    shared = model.encoder.last_layer_parameters() if cfg.weighting == "gradnorm" else list(model.encoder.parameters())
    weighting = WEIGHTINGS[cfg.weighting](list(cfg.tasks), init_weights={t: c.weight for t, c in cfg.tasks.items()},
                                          shared_params=shared, **cfg.weighting_args).to(device)
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.train.weight_decay) +
                                  [{"params": list(weighting.parameters()), "weight_decay": 0.0}], lr=cfg.train.lr)
    lengths = [len(x) for x in train_cols["input_ids"]]
    batches_per_epoch = math.ceil(len(lengths) / cfg.train.batch_size)
    total = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * batches_per_epoch / cfg.train.grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, warmup=int(cfg.train.warmup_ratio * total), total=total))
    state = TrainState()
    if resume and (out / "last" / STATE_FILE).exists():
        state = _load_state(out / "last", model, weighting, optimizer, scheduler, scaler, device)
        log.info("resumed %s at step %d of %d", out, state.step, total)
    _truncate_history(out / "history.jsonl", state.step)
    log.info("training %s on %s: %d segments, %d steps, %s, tasks %s, weighting %s%s",
             cfg.model.pretrained or f"a new {cfg.model.backbone}", ", ".join(cfg.data.pairs), len(lengths),
             total, device, ", ".join(cfg.tasks), cfg.weighting, f", features {model.features.extra_repr()}" if stats else "")

    # --- loop ---------------------------------------------------------------------------
    model.train()
    terms = cfg.objective_terms()
    seen, loop_seconds = 0, 0.0  # training segments and seconds, evaluation excluded
    with open(out / "history.jsonl", "a", encoding="utf-8") as history:
        while state.step < total and not state.stopped_early:
            order = batch_order(lengths, cfg.train.batch_size, seed=cfg.train.seed, epoch=state.epoch)
            while state.pos < len(order) and state.step < total:
                tick = time.monotonic()
                group = order[state.pos:state.pos + cfg.train.grad_accum]
                state.pos += len(group)
                sums: dict[str, float] = {}
                for rows in group:
                    batch = _to(collate(train_cols, rows, pad_id=tokenizer.pad_token_id,
                                        padding_side=tokenizer.padding_side), device)
                    with autocast():
                        losses = model(batch)
                    _check_finite(losses, state.step)
                    weights = weighting.backward({t: v / len(group) for t, v in losses.items()}, state.step,
                                                 scale=scaler.scale if scaler else None)
                    for t, v in losses.items():
                        sums[t] = sums.get(t, 0.0) + v.item() / len(group)
                    seen += len(rows)
                if scaler:
                    scaler.unscale_(optimizer)
                if cfg.train.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                (scaler.step(optimizer), scaler.update()) if scaler else optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                loop_seconds += time.monotonic() - tick
                _write(history, {"step": state.step, "lr": scheduler.get_last_lr()[0], "loss": sums, "weight": weights})
                if state.step % 50 == 0:
                    rate = seen / loop_seconds
                    log.info("step %d/%d  %s  %.1f segments/s", state.step, total,
                             "  ".join(f"{t} {v:.3f}" for t, v in sums.items()), rate)
                if state.step % cfg.train.eval_every == 0 or state.step == total:
                    value, metrics = _evaluate(cfg, model, eval_splits, state, terms, out, history, device, autocast)
                    _save_state(out / "last", state, model, weighting, optimizer, scheduler, scaler)
                    if report is not None:  # after saving: a report that raises loses nothing
                        report(step=state.step, objective=value, metrics=metrics, checkpoint=out / "checkpoint",
                               final=state.step >= total or state.stopped_early)
                    if state.stopped_early:
                        break
            if state.pos >= len(order):
                state.epoch, state.pos = state.epoch + 1, 0

    result = {"best_step": state.best_step, "objective": state.best_objective, "steps": state.step,
              "stopped_early": state.stopped_early, "seconds": round(time.monotonic() - started, 1),
              "train_seconds": round(loop_seconds, 2), "train_segments": seen,
              "metrics": state.best_metrics}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


# --- the steps above, in the order they run ----------------------------------------------


def _check_run_dir(cfg: RunConfig, out: Path, resume: bool) -> None:
    old = out / "config.yaml"
    if not (out / "last" / STATE_FILE).exists():
        return
    if not resume:
        shutil.rmtree(out / "last")
        (out / "history.jsonl").unlink(missing_ok=True)
        return
    if old.exists() and to_dict(load_config(old)) != to_dict(cfg):
        raise ValueError(f"{out}: holds an interrupted run of another config ({old}); "
                         f"use another output folder, or start it over (--overwrite)")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _pick_device(wanted: str) -> torch.device:
    if wanted == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device: cuda was asked for, but torch sees no CUDA device")
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def _precision(precision: str, device: torch.device) -> tuple[Callable[[], Any], Any]:
    """Autocast context factory and fp16 grad scaler (CPU: always fp32)."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext, None
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return partial(torch.autocast, device_type="cuda", dtype=dtype), scaler


def _tokenizer(cfg: RunConfig, backbone, cache: Path):
    if cfg.model.pretrained:
        return load_tokenizer(resolve_pretrained(cfg.model.pretrained), backbone)
    texts = []
    for pair in cfg.data.pairs:
        records = read_pair(cfg.data.root, pair, cfg.data.train_split)[:cfg.data.max_train_samples]
        texts += [r["src"] for r in records] + [r["mt"] for r in records] + [r["pe"] for r in records if r["pe"]]
    return cached_tokenizer(backbone, texts, vocab_size=cfg.model.vocab_size, cache_dir=cache)


def _concat(splits: list[PairSplit]) -> dict[str, list]:
    cols: dict[str, list] = {key: [] for key in splits[0].columns}
    for split in splits:
        for key in cols:
            cols[key].extend(split.columns[key])
    return cols


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _check_finite(losses: dict[str, torch.Tensor], step: int) -> None:
    for task, value in losses.items():
        if not torch.isfinite(value):
            raise TrainingDiverged(f"step {step + 1}: the {task} loss is {value.item()}")


def _write(history, record: dict) -> None:
    history.write(json.dumps(record) + "\n")
    history.flush()


def _evaluate(cfg, model, eval_splits, state: TrainState, terms, out: Path, history, device,
              autocast) -> tuple[float, dict]:
    preds = {pair: predict_split(model, split, batch_size=cfg.train.eval_batch_size, device=device,
                                 autocast=autocast) for pair, split in eval_splits.items()}
    metrics = {pair: score_split(eval_splits[pair], preds[pair]) for pair in eval_splits}
    value = objective(metrics, terms)
    _write(history, {"step": state.step, "objective": value, "eval": metrics})
    log.info("step %d: objective %.4f (%s)", state.step, value, ", ".join(terms))
    key = lambda v: -math.inf if v is None or math.isnan(v) else v  # noqa: E731
    if state.best_step is None or key(value) > key(state.best_objective):
        state.best_objective, state.best_step, state.best_metrics = value, state.step, metrics
        state.evals_since_best = 0
        model.save_pretrained(out / "checkpoint")
        for pair, split in eval_splits.items():
            write_predictions(split, preds[pair], out / "predictions" / f"{pair}.{split.split}")
    else:
        state.evals_since_best += 1
        if cfg.train.patience and state.evals_since_best >= cfg.train.patience:
            state.stopped_early = True
            log.info("early stop at step %d: no improvement in %d evaluations", state.step, cfg.train.patience)
    return value, metrics


def _save_state(where: Path, state: TrainState, model, weighting, optimizer, scheduler, scaler) -> None:
    """Everything a resumed run needs to continue exactly as if never stopped."""
    where.mkdir(parents=True, exist_ok=True)
    blob = {
        "state": asdict(state),
        "model": model.state_dict(),
        "weighting": weighting.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }
    tmp = where / (STATE_FILE + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(where / STATE_FILE)  # atomic: a crash mid-write keeps the previous state


def _load_state(where: Path, model, weighting, optimizer, scheduler, scaler, device) -> TrainState:
    blob = torch.load(where / STATE_FILE, map_location=device, weights_only=False)
    model.load_state_dict(blob["model"])
    weighting.load_state_dict(blob["weighting"])
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    if scaler and blob["scaler"]:
        scaler.load_state_dict(blob["scaler"])
    rng = blob["rng"]
    torch.set_rng_state(rng["torch"].cpu())
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return TrainState(**blob["state"])


def _truncate_history(path: Path, step: int) -> None:
    """Drop learning-curve lines past the step a resumed run restarts from."""
    if not path.exists():
        return
    keep = [line for line in path.read_text(encoding="utf-8").splitlines() if json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")

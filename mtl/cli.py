"""`python -m mtl {train,evaluate,predict}`: the trainer's command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from mtl.config import ConfigError, load_config
from mtl.model.checkpoints import CheckpointNotInstalled

HELP = """\
A compact multi-task trainer for MT quality estimation on MLQE-PE (WMT20 QE).

  python -m mtl train --config examples/en-de.yaml --out runs/en-de
  python -m mtl evaluate --run runs/en-de --split dev
  python -m mtl predict --run runs/en-de --pair ro-en --split dev --out preds/
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mtl", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate a config; writes a run directory",
                       description="Train on data.pairs' train split, evaluate on the eval split every "
                                   "train.eval_every steps, keep the best checkpoint. Rerunning the same "
                                   "command after an interruption resumes from the last evaluation.")
    p.add_argument("--config", required=True, type=Path, help="trainer config YAML (see examples/)")
    p.add_argument("--out", required=True, type=Path,
                   help="run directory: config.yaml, checkpoint/, metrics.json, history.jsonl, predictions/")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (the `data/` folder of a clone of "
                                             "github.com/sheffieldnlp/mlqe-pe); overrides data.root")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=1e-4 (value parsed as YAML); repeatable")
    p.add_argument("--overwrite", action="store_true", help="start over instead of resuming an interrupted run")

    p = sub.add_parser("evaluate", help="re-score a saved run's best checkpoint",
                       description="Score the best checkpoint of a run on a split of its pairs "
                                   "(or --pair) and print {pair: {task: {metric: value}}} as JSON.")
    p.add_argument("--run", required=True, type=Path, help="run directory written by `train`")
    p.add_argument("--split", default="dev", help="split to score (default: dev)")
    p.add_argument("--pair", action="append", help="language pair (default: the run's pairs); repeatable")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--max-samples", type=int, metavar="N",
                   help="score the first N segments of each pair (default: the run's data.max_eval_samples, "
                        "so the numbers match metrics.json; 0: all)")

    p = sub.add_parser("predict", help="write predictions in the WMT20 QE submission formats",
                       description="Predict every task of a run for one pair and split; labels are not needed.")
    p.add_argument("--run", required=True, type=Path, help="run directory written by `train`")
    p.add_argument("--pair", required=True, help="language pair, e.g. ro-en")
    p.add_argument("--split", default="dev", help="split (default: dev)")
    p.add_argument("--out", required=True, type=Path, help="folder for the prediction files")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--method", default="mtl", help="method name written in the files (default: mtl)")
    p.add_argument("--max-samples", type=int, metavar="N", help="predict only the first N segments (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_libraries(args.verbose)
    try:
        if args.command == "train":
            return _train(args)
        return _evaluate(args) if args.command == "evaluate" else _predict(args)
    except ConfigError as e:
        print(f"config error:\n{e}", file=sys.stderr)
        return 2
    except CheckpointNotInstalled as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        return
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _overrides(args: argparse.Namespace) -> dict:
    import yaml

    overrides = {}
    for item in getattr(args, "set", []):
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError([f"--set {item}: expected KEY=VALUE, e.g. train.lr=1e-4"])
        overrides[key] = yaml.safe_load(value)
    if args.data is not None:
        overrides["data.root"] = str(args.data)
    return overrides


def _train(args: argparse.Namespace) -> int:
    from mtl.train import train

    cfg = load_config(args.config, overrides=_overrides(args))
    result = train(cfg, out_dir=args.out, resume=not args.overwrite)
    print(json.dumps({"best_step": result["best_step"], "objective": result["objective"],
                      "metrics": result["metrics"]}, indent=2))
    print(f"run written to {args.out}")
    return 0


def _load_run(args: argparse.Namespace):
    from mtl.model.multitask import MultiTaskModel

    checkpoint = args.run / "checkpoint"
    if not checkpoint.exists():
        raise SystemExit(f"{args.run}: no checkpoint/ folder; is this a run directory written by `mtl train`?")
    return MultiTaskModel.from_pretrained(checkpoint)


def _evaluate(args: argparse.Namespace) -> int:
    from mtl.predict import score_run

    model = _load_run(args)
    root = str(args.data) if args.data else model.cfg.data.root
    limit = model.cfg.data.max_eval_samples if args.max_samples is None else (args.max_samples or None)
    scores = score_run(model, root=root, split=args.split, pairs=args.pair or list(model.cfg.data.pairs),
                       max_samples=limit)
    print(json.dumps(scores, indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtl.predict import predict_to_files

    model = _load_run(args)
    root = str(args.data) if args.data else model.cfg.data.root
    for path in predict_to_files(model, root=root, pair=args.pair, split=args.split, out=args.out,
                                 method=args.method, max_samples=args.max_samples or None):
        print(path)
    return 0

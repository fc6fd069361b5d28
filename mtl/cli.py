"""`python -m mtl {train,evaluate,predict}`: the trainer's command line.

Every mistake is one message and exit code 2 (`mtl.errors.run_cli`); `--help` imports no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from mtl.errors import run_cli

HELP = """\
A compact multi-task trainer for MT quality estimation on MLQE-PE (WMT20 QE).

  python -m mtl train --config examples/en-de.yaml --out runs/en-de
  python -m mtl evaluate --run runs/en-de --split dev
  python -m mtl predict --run runs/en-de --pair ro-en --split dev --out preds/

Exit codes: 0 done; 2 a mistake in the command, config, data or environment (one message, no
traceback; -v shows it); 1 a run that failed, or a bug (its traceback is printed).
"""


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mtl", description=HELP,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, and tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train and evaluate a config; writes a run directory",
                       description="Train on data.pairs' train split, evaluate on the eval split every "
                                   "train.eval_every steps, keep the best checkpoint. Rerunning the same "
                                   "command after an interruption resumes from the last evaluation; a folder "
                                   "holding a run of another config is refused (--overwrite replaces it).")
    p.add_argument("--config", required=True, type=Path, help="trainer config YAML (see examples/)")
    p.add_argument("--out", required=True, type=Path,
                   help="run directory: config.yaml, checkpoint/, metrics.json, history.jsonl, predictions/")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (the `data/` folder of a clone of "
                                             "github.com/sheffieldnlp/mlqe-pe); overrides data.root")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.lr=1e-4 (value parsed as YAML); repeatable")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: replace what an earlier run wrote to --out, whatever its config")

    p = sub.add_parser("evaluate", help="re-score a saved run's best checkpoint",
                       description="Score the best checkpoint of a run on a split of its pairs "
                                   "(or --pair) and print {pair: {task: {metric: value}}} as JSON.")
    p.add_argument("--run", required=True, type=Path, help="run directory written by `train`")
    p.add_argument("--split", default="dev", help="split to score (default: dev)")
    p.add_argument("--pair", action="append", help="language pair (default: the run's pairs); repeatable")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--max-samples", type=_count, metavar="N",
                   help="score the first N segments of each pair (default: the run's data.max_eval_samples, "
                        "so the numbers match metrics.json; 0: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the run's train.device")

    p = sub.add_parser("predict", help="write predictions in the WMT20 QE submission formats",
                       description="Predict every task of a run for one pair and split; labels are not needed.")
    p.add_argument("--run", required=True, type=Path, help="run directory written by `train`")
    p.add_argument("--pair", required=True, help="language pair, e.g. ro-en")
    p.add_argument("--split", default="dev", help="split (default: dev)")
    p.add_argument("--out", required=True, type=Path, help="folder for the prediction files")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--method", default="mtl", help="method name written in the files (default: mtl)")
    p.add_argument("--max-samples", type=_count, metavar="N", help="predict only the first N segments (default: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the run's train.device")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    commands = {"train": _train, "evaluate": _evaluate, "predict": _predict}
    return run_cli(f"python -m mtl {args.command}", lambda: commands[args.command](args), verbose=args.verbose)


def _quiet_libraries(verbose: bool) -> None:
    if verbose:
        return
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    import yaml

    from mtl.config import ConfigError
    from mtl.config_loader import Problem

    overrides: dict[str, Any] = {}
    problems = []
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            problems.append(Problem(item, "expected KEY=VALUE", "e.g. --set train.lr=1e-4"))
            continue
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            problems.append(Problem(key, f"value {value!r} is not valid YAML ({getattr(e, 'problem', e)})"))
    if problems:
        raise ConfigError(problems, source="--set")
    if args.data is not None:
        overrides["data.root"] = str(args.data)
    return overrides


def _train(args: argparse.Namespace) -> int:
    from mtl.config import load_config
    from mtl.preflight import check_run

    cfg = load_config(args.config, overrides=_overrides(args))
    check_run(cfg, source=str(args.config))  # before torch is imported: a missing pair answers at once
    _quiet_libraries(args.verbose)
    from mtl.train import train

    result = train(cfg, out_dir=args.out, resume=not args.overwrite)
    print(json.dumps(_finite({"best_step": result["best_step"], "objective": result["objective"],
                              "metrics": result["metrics"]}), indent=2))
    print(f"run written to {args.out}")
    return 0


def _load_run(args: argparse.Namespace) -> Any:
    from mtl.model.checkpoints import CheckpointError
    from mtl.rundir import RunDir

    run = RunDir(args.run)
    if not run.path.is_dir():
        raise CheckpointError(f"--run {run.path}: no such folder; expected a run directory written by `mtl train`")
    if not run.checkpoint.is_dir():
        raise CheckpointError(f"--run {run.path}: no checkpoint/ folder; is this a run directory written by "
                              f"`mtl train` (a run that evaluated at least once)?")
    _quiet_libraries(args.verbose)
    from mtl.model.multitask import MultiTaskModel

    return MultiTaskModel.from_pretrained(run.checkpoint)


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_run(args)
    from mtl.predict import score_run

    root = str(args.data) if args.data else model.cfg.data.root
    limit = model.cfg.data.max_eval_samples if args.max_samples is None else (args.max_samples or None)
    scores = score_run(model, root=root, split=args.split, pairs=args.pair or list(model.cfg.data.pairs),
                       max_samples=limit, device=args.device)
    print(json.dumps(_finite(scores), indent=2))
    return 0


def _finite(value: Any) -> Any:
    """The value with every NaN or infinite number as null: standard JSON (an undefined metric is null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _predict(args: argparse.Namespace) -> int:
    from mtl.errors import SetupError

    if args.out.exists() and not args.out.is_dir():
        raise SetupError(f"--out {args.out}: is a file, expected a folder for the prediction files")
    model = _load_run(args)
    from mtl.predict import predict_to_files

    root = str(args.data) if args.data else model.cfg.data.root
    for path in predict_to_files(model, root=root, pair=args.pair, split=args.split, out=args.out,
                                 method=args.method, max_samples=args.max_samples or None, device=args.device):
        print(path)
    return 0


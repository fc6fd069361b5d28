"""`python -m mtl {train,evaluate,predict,ensemble}`: the trainer's command line.

Every mistake is one message and exit code 2 (`mtl.errors.run_cli`); `--help` imports no torch.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, cast

from mtl.errors import run_cli
from mtl.files import finite

HELP = """\
A compact multi-task trainer for MT quality estimation on MLQE-PE (WMT20 QE).

  python -m mtl train --config examples/en-de.yaml --out runs/en-de
  python -m mtl evaluate --run runs/en-de --split dev
  python -m mtl predict --run runs/en-de --input new.tsv --out preds/
  python -m mtl ensemble --runs runs/a runs/b --out runs/ab    # then --run runs/ab

Exit codes: 0 done; 2 a mistake in the command, config, data or environment (one message, no
traceback; -v shows it); 1 a run that failed, or a bug (its traceback is printed).
"""


PREDICT_HELP = """\
Predict with a trained run: new, unlabelled translations, or a dataset's split.

  --input new.tsv            a table with columns src and mt (id kept if present)
  --src src.txt --mt mt.txt  line-aligned plain text
  --pair en-de --split dev   a dataset of the run (MLQE-PE pair or a data.datasets name)

Writes --out/predictions.tsv (or .jsonl): per segment its id (or line number), the sentence
scores (da, hter), the MT word, gap and source tags with their P(BAD) (space-separated, one
per word; NaN for words cut by max_length), and the post-edit when the run has that head.
--format wmt20 writes what the official WMT20 scorers read: da/predictions.txt,
hter/predictions.txt, word/predictions_{mt,gaps,src}.txt. A run trained with glass-box
features needs the NMT system's outputs too (--mt-tokens, --mt-logprobs, --model-scores, or
those columns of --input); it says which.
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
    p.add_argument("--run", required=True, type=Path,
                   help="run directory written by `train`, or an ensemble folder (`ensemble`, search.finalize)")
    p.add_argument("--split", default="dev", help="split to score (default: dev)")
    p.add_argument("--pair", action="append", help="language pair (default: the run's pairs); repeatable")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--max-samples", type=_count, metavar="N",
                   help="score the first N segments of each pair (default: the run's data.max_eval_samples, "
                        "so the numbers match metrics.json; 0: all)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the run's train.device")

    p = sub.add_parser("predict", help="score new translations (or a dataset's split) with a run",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description=PREDICT_HELP)
    p.add_argument("--run", required=True, type=Path,
                   help="run directory written by `train`, or an ensemble folder (`ensemble`, search.finalize)")
    p.add_argument("--out", required=True, type=Path, help="folder for the prediction files")
    given = p.add_argument_group("what to predict (one of)")
    given.add_argument("--input", type=Path, metavar="FILE",
                       help="a table of segments: .tsv, .csv, .jsonl or .parquet with columns src and mt "
                            "(and id, if present)")
    given.add_argument("--src", type=Path, metavar="FILE", help="source sentences, one per line (with --mt)")
    given.add_argument("--pair", help="a dataset of the run (a data.datasets name or an MLQE-PE pair) and --split")
    p.add_argument("--mt", type=Path, metavar="FILE", help="their translations, one per line (with --src)")
    p.add_argument("--columns", default="", metavar="FIELD=COL,...",
                   help="with --input: columns named otherwise, e.g. src=source,mt=target,id=seg_id")
    p.add_argument("--mt-tokens", type=Path, metavar="FILE",
                   help="with --src/--mt: the NMT system's output tokens per line (MLQE-PE word-probas/mt.*)")
    p.add_argument("--mt-logprobs", type=Path, metavar="FILE",
                   help="with --src/--mt: their log-probs per line, then <eos>'s (MLQE-PE word-probas/word_probas.*)")
    p.add_argument("--model-scores", type=Path, metavar="FILE",
                   help="with --src/--mt: the NMT system's sentence score per line")
    p.add_argument("--split", default="dev", help="with --pair: the split (default: dev)")
    p.add_argument("--data", type=Path, help="with --pair: MLQE-PE data root (default: the run's data.root)")
    p.add_argument("--max-samples", type=_count, metavar="N", help="with --pair: only the first N segments")
    p.add_argument("--format", choices=("tsv", "jsonl", "wmt20"),
                   help="tsv or jsonl: one row per segment; wmt20: the WMT20 submission files "
                        "(default: wmt20 with --pair, else tsv)")
    p.add_argument("--method", default="mtl", help="method name written in wmt20 files (default: mtl)")
    p.add_argument("--overwrite", action="store_true", help="replace predictions already in --out")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the run's train.device")

    p = sub.add_parser("ensemble", help="ensemble trained runs into a folder that evaluate and predict take as --run",
                       description="Average the predictions of trained runs (best first): sentence scores and "
                                   "words' P(BAD) per task, with weights chosen on one half of dev when they beat "
                                   "the plain mean on the other half. Writes ensemble.json, metrics.json (the "
                                   "ensemble's dev metrics beside each run's) and predictions/ to --out.")
    p.add_argument("--runs", required=True, nargs="+", type=Path, metavar="RUN", help="run directories, best first")
    p.add_argument("--out", required=True, type=Path, help="the ensemble folder")
    p.add_argument("--split", default="dev", help="split the weights are chosen and scored on (default: dev)")
    p.add_argument("--data", type=Path, help="MLQE-PE data root (default: the runs' data.root)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the first run's train.device")
    p.add_argument("--overwrite", action="store_true", help="replace an ensemble already in --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    commands = {"train": _train, "evaluate": _evaluate, "predict": _predict, "ensemble": _ensemble}
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
    print(json.dumps(finite({"best_step": result["best_step"], "objective": result["objective"],
                              "metrics": result["metrics"]}), indent=2))
    print(f"run written to {args.out}")
    return 0


def _load_run(args: argparse.Namespace) -> Any:
    """The run directory or ensemble folder of ``--run``, loaded (`mtl.ensemble.Ensemble`)."""
    _quiet_libraries(args.verbose)
    from mtl.ensemble import load_run

    return load_run(args.run)


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_run(args)
    from mtl.predict import score_run

    limit = model.cfg.data.max_eval_samples if args.max_samples is None else (args.max_samples or None)
    scores = score_run(model, root=str(args.data) if args.data else None, split=args.split,
                       pairs=args.pair or list(model.cfg.data.pairs), max_samples=limit, device=args.device)
    print(json.dumps(finite(scores), indent=2))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from mtl.errors import SetupError

    modes = [name for name, on in (("--input", args.input), ("--src", args.src), ("--pair", args.pair)) if on]
    if len(modes) != 1:
        raise SetupError(f"predict: give one of --input FILE, --src FILE --mt FILE, --pair NAME; got "
                         f"{', '.join(modes) or 'none'}")
    if bool(args.src) != bool(args.mt):
        raise SetupError("predict: --src and --mt go together (line-aligned source and translation files)")
    fmt = args.format or ("wmt20" if args.pair else "tsv")
    _check_out(args.out, fmt, overwrite=args.overwrite)
    model = _load_run(args)
    from mtl.predict import Format, glassbox_inputs, predict_stream

    needs = glassbox_inputs(model)
    records, total = _predict_inputs(args, model, needs)
    files, n = predict_stream(model, records, out=args.out, fmt=cast(Format, fmt), method=args.method,
                              device=args.device, total=total)
    for path in files:
        print(path)
    print(f"{n} segments predicted", file=sys.stderr)
    return 0


def _ensemble(args: argparse.Namespace) -> int:
    from mtl.errors import SetupError
    from mtl.rundir import RunDir

    out = RunDir(args.out)
    if out.path.exists() and not out.path.is_dir():
        raise SetupError(f"--out {out.path}: is a file, expected a folder for the ensemble")
    if out.config.exists() or out.checkpoint.exists():
        raise SetupError(f"--out {out.path}: holds a run directory; give the ensemble a folder of its own")
    if out.ensemble.exists() and not args.overwrite:
        raise SetupError(f"--out {out.path}: already holds an ensemble; pass --overwrite to replace it, or "
                         f"another --out")
    if len(args.runs) < 2:
        raise SetupError(f"--runs: an ensemble needs at least 2 runs, got {len(args.runs)}")
    _quiet_libraries(args.verbose)
    from mtl.ensemble_dir import build_ensemble

    result = build_ensemble(args.runs, out.path, split=args.split, root=str(args.data) if args.data else None,
                            device=args.device)
    print(json.dumps(finite({k: result[k] for k in ("objective", "metrics", "choice")}), indent=2))
    print(f"ensemble written to {out.path}  (python -m mtl predict --run {out.path} ...)", file=sys.stderr)
    return 0


def _check_out(out: Path, fmt: str, *, overwrite: bool) -> None:
    from mtl.errors import SetupError
    from mtl.predict import OUTPUT_FILES

    if out.exists() and not out.is_dir():
        raise SetupError(f"--out {out}: is a file, expected a folder for the prediction files")
    found = [out / OUTPUT_FILES[fmt]] if fmt in OUTPUT_FILES else list(out.glob("*/predictions*.txt"))
    taken = [p for p in found if p.exists()]
    if taken and not overwrite:
        raise SetupError(f"--out {out}: already holds {', '.join(str(p) for p in taken[:3])}; pass --overwrite to "
                         f"replace them, or another --out")


def _predict_inputs(args: argparse.Namespace, model: Any, needs: dict[str, list[str]]) -> tuple[Any, int | None]:
    """The segments to predict and their count (None: unknown), every glass-box input the
    model needs checked before anything is predicted."""
    from mtl.data import lines, tables
    from mtl.errors import SetupError

    why = {"model_score": f"the run's glass-box features {', '.join(needs.get('model_score', []))} read the NMT "
                          f"system's sentence score (features.sentence={model.cfg.features.sentence})",
           "nmt_logprobs": f"the run's glass-box features {', '.join(needs.get('nmt_logprobs', []))} read the NMT "
                           f"system's token log-probs"}
    if args.pair:
        cfg = model.cfg
        source = cfg.data.source(args.pair, root=str(args.data) if args.data else None)
        records = source.read(args.pair, args.split, word_probas="nmt_logprobs" in needs)[:args.max_samples or None]
        return records, len(records)
    if args.input:
        columns = _columns(args.columns)
        need = {key: why[key] for key in needs if key == "model_score"}
        records = tables.read_file(args.input, columns=columns, word_probas="nmt_logprobs" in needs, need=need)
        return records, _rows_in(args.input)
    files = {"src": args.src, "mt": args.mt}
    flags = {"model_score": ("--model-scores", args.model_scores),
             "nmt_logprobs": ("--mt-tokens and --mt-logprobs", args.mt_tokens and args.mt_logprobs)}
    missing = [(flags[key][0], why[key]) for key in needs if not flags[key][1]]
    if missing:
        raise SetupError("; ".join(f"pass {flag}: {reason}" for flag, reason in missing))
    if "model_score" in needs:
        files["model_score"] = args.model_scores
    if "nmt_logprobs" in needs:
        files.update(nmt_tokens=args.mt_tokens, nmt_logprobs=args.mt_logprobs)
    return lines.read_lines(files), lines.count_lines(args.src)


def _columns(text: str) -> dict[str, str]:
    from mtl.data.tables import FIELDS
    from mtl.errors import SetupError

    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, column = item.partition("=")
        if not sep or not key or not column:
            raise SetupError(f"--columns {item!r}: expected FIELD=COLUMN, e.g. src=source")
        if key not in FIELDS:
            raise SetupError(f"--columns {key}: unknown field; valid: {', '.join(FIELDS)}")
        out[key] = column
    return out


def _rows_in(path: Path) -> int | None:
    """Rows of a table, for the progress bar (a CSV with quoted newlines: approximate)."""
    from mtl.data.lines import count_lines

    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    return count_lines(path) - (0 if suffix in (".jsonl", ".json", ".ndjson") else 1)

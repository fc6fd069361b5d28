"""`python -m reports build|export|ensemble`: the reports' command line.

`--help` imports neither torch, ray nor plotly. User errors are one line on stderr and exit
code 2, never a traceback (`mtl.errors.run_cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from mtl.errors import run_cli
from reports.aggregate import METHODS

HELP = """\
Which config should I retrain, and how sure am I that it is better on the pairs I care about?
Reports on a search's study (written by `python -m search.run`):

  python -m reports build    --storage sqlite:///studies/nmt_qe.db --study nmt_qe --out reports/nmt_qe/
  python -m reports export   --storage sqlite:///studies/nmt_qe.db --rank 1 --aggregator worst --out best.yaml
  python -m reports ensemble --storage sqlite:///studies/nmt_qe.db --top 3 --out reports/nmt_qe/ensemble.json

`build` writes index.html (one self-contained page: open it offline) and metrics.csv (the tidy
table). `export` writes a complete trainer config: python -m mtl train --config best.yaml.
--study may be left out when the storage holds a single study. Exit codes: 0 done; 2 a mistake
in the command or a study it cannot read (one message; -v shows the traceback); 1 a bug.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m reports", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,export,ensemble}")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///studies/quickstart.db")
        q.add_argument("--study", help="study name (default: the storage's only study)")
        q.add_argument("-v", "--verbose", action="store_true", help="log what is being done, and tracebacks of errors")

    h = "write the HTML report (index.html) and the tidy table (metrics.csv)"
    b = sub.add_parser("build", help=h, description=h)
    common(b)
    b.add_argument("--out", required=True, help="report folder, e.g. reports/nmt_qe/")
    b.add_argument("--top", type=int, default=3, help="top configs that get bootstrap intervals and make the "
                                                      "ensemble (default 3)")
    b.add_argument("--bootstrap", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000)")
    b.add_argument("--seed", type=int, default=0, help="resampling seed (default 0)")
    b.add_argument("--data", help="MLQE-PE data root for the gold labels and the zero-training floor "
                                  "(default: the trials' data.root)")

    e = sub.add_parser("export", help=(h := "write a ranked config as a complete trainer config YAML that retrains "
                                             "as is: python -m mtl train --config best.yaml"), description=h)
    common(e)
    e.add_argument("--out", required=True, help="YAML file to write, e.g. best.yaml")
    e.add_argument("--rank", type=int, default=1, help="1 = best (default), 2 = runner-up, ...")
    e.add_argument("--aggregator", choices=METHODS,
                   help="rank by this aggregator over the per-pair scores (default: the values the study recorded)")

    n = sub.add_parser("ensemble", help=(h := "average the top configs' dev predictions; does it beat the best one?"),
                       description=h)
    common(n)
    n.add_argument("--out", required=True, help="JSON file to write, e.g. reports/nmt_qe/ensemble.json")
    n.add_argument("--top", type=int, default=3, help="configs to average (default 3)")
    n.add_argument("--aggregator", choices=METHODS, help="ranking that picks them (default: the study's)")
    n.add_argument("--data", help="MLQE-PE data root for the gold labels (default: the trials' data.root)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2: a user error, said on stderr)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    from reports.extract import open_study

    return run_cli(f"python -m reports {args.command}",
                   lambda: _COMMANDS[args.command](open_study(args.storage, args.study), args), verbose=args.verbose)


def _build(study, args: argparse.Namespace) -> int:
    from reports.build import build_report
    from reports.extract import ReportError

    if args.top < 1 or args.bootstrap < 10:
        raise ReportError(f"--top must be >= 1 and --bootstrap >= 10, got {args.top} and {args.bootstrap}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise ReportError(f"--out {args.out}: is a file, expected the report's folder (index.html, metrics.csv)")
    path = build_report(study, out=args.out, top=args.top, n_boot=args.bootstrap, seed=args.seed, data_root=args.data)
    print(f"report: {path}")
    return 0


def _export(study, args: argparse.Namespace) -> int:
    from reports.export import export_best

    path = export_best(study, out=args.out, rank=args.rank, aggregator=args.aggregator)
    print(f"config: {path}  (retrain: python -m mtl train --config {path} --out runs/best)")
    return 0


def _ensemble(study, args: argparse.Namespace) -> int:
    from reports.aggregate import aggregate
    from reports.ensemble import ensemble, summary, write_ensemble
    from reports.extract import extract

    data = extract(study, importances=False)
    ens = ensemble(data, aggregate(data), top=args.top, method=args.aggregator, data_root=args.data)
    path = write_ensemble(ens, args.out)
    for line in summary(ens) + ens.notes:
        print(line)
    print(f"ensemble: {path}")
    return 0


_COMMANDS = {"build": _build, "export": _export, "ensemble": _ensemble}

if __name__ == "__main__":
    sys.exit(main())

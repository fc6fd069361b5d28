"""`python -m search.finalize`: the command line of `search.finalizing` (a study's top configs
retrained on all the training data with several seeds, then ensembled).

    python -m search.finalize --storage sqlite:///studies/quickstart.db --top 3 --seeds 2 --out runs/quickstart/final
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl.errors import SetupError, run_cli
from reports.aggregate import METHODS
from search.finalizing import Member, check_out, finalize, plan_members, summary
from search.ray_session import join

__all__ = ["main", "run_finalize"]

HELP = """\
Turn a search into a model to ship: the top --top configs of a study (by --aggregator, default
the values the study recorded) are retrained with --seeds seeds each on --train-samples
training segments per dataset (default: all) and evaluated on all of dev; their ensemble
averages their predictions, with weights chosen on one half of dev when they beat the plain
mean on the other half. A member evaluates as often per epoch as its trial did (its
train.eval_every scaled by its training rows over the trial's).

  python -m search.finalize --storage sqlite:///studies/quickstart.db --top 3 --seeds 2 --out runs/final
  python -m mtl evaluate --run runs/final/ensemble --split dev
  python -m mtl predict --run runs/final/ensemble --input new.tsv --out scores/

Each member is a Ray task with --cpus-per-member / --gpus-per-member (a trial's resources);
--address joins a running cluster. Run the same command again after a crash: finished members
are kept. Exit codes: 0 done; 2 a mistake in the command or the study; 1 a member failed.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.finalize", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", required=True, help="Optuna storage URL, e.g. sqlite:///studies/quickstart.db")
    p.add_argument("--study", help="study name (default: the storage's only study)")
    p.add_argument("--out", required=True, help="folder for members/ and ensemble/, e.g. runs/quickstart/final")
    p.add_argument("--top", type=int, default=3, help="configs to retrain (default 3)")
    p.add_argument("--seeds", type=int, default=2, help="seeds per config: its own, then the next (default 2)")
    p.add_argument("--train-samples", default="all", metavar="N|all",
                   help="training segments per dataset (default: all of them)")
    p.add_argument("--aggregator", choices=METHODS, help="ranking that picks the configs (default: the values the "
                                                         "study recorded)")
    p.add_argument("--data", help="data root for the MLQE-PE pairs (default: the trials' data.root)")
    p.add_argument("--address", help="attach to a running Ray cluster: auto or host:port (default: a local Ray "
                                     "on 127.0.0.1)")
    p.add_argument("--cpus-per-member", type=float, default=1.0, help="CPUs each member's task reserves (default 1)")
    p.add_argument("--gpus-per-member", type=float, default=0.0, help="GPUs each member's task reserves (default 0)")
    p.add_argument("--overwrite", action="store_true", help="retrain members whose folders hold runs of other configs")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray's output and the traceback of an error")
    return p


def train_samples(text: str) -> int | None:
    """``--train-samples``: a positive count, or ``all`` (None)."""
    if text == "all":
        return None
    if not text.isdigit() or int(text) < 1:
        raise SetupError(f"--train-samples {text}: expected a positive number of segments, or all")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_cli("python -m search.finalize", lambda: _main(args), verbose=args.verbose)


def _main(args: argparse.Namespace) -> int:
    from reports.extract import open_study

    samples = train_samples(args.train_samples)
    if args.cpus_per_member <= 0 or args.gpus_per_member < 0:
        raise SetupError(f"--cpus-per-member must be above 0 and --gpus-per-member 0 or more, got "
                         f"{args.cpus_per_member:g} and {args.gpus_per_member:g}")
    study = open_study(args.storage, args.study)
    members = plan_members(study, top=args.top, seeds=args.seeds, train_samples=samples,
                           aggregator=args.aggregator, data_root=args.data)
    return run_finalize(study, members, out=args.out, address=args.address, cpus=args.cpus_per_member,
                        gpus=args.gpus_per_member, overwrite=args.overwrite, data_root=args.data,
                        verbose=args.verbose)


def run_finalize(study: Any, members: Sequence[Member], *, out: str | Path, address: str | None, cpus: float,
                 gpus: float, overwrite: bool, data_root: str | None, verbose: bool, tune: Any = None) -> int:
    """Join Ray (unless ``tune``, a joined `search.tune`, is given), finalize, print what the
    ensemble bought; the exit code."""
    check_out(members, Path(out), overwrite=overwrite)  # before Ray starts
    own = tune is None
    tune = tune or join(address, verbose=verbose)
    try:
        result = finalize(study, members, out=out, tune=tune, cpus=cpus, gpus=gpus, overwrite=overwrite,
                          data_root=data_root, say=lambda line: print(line, file=sys.stderr))
    finally:
        if own:
            tune.disconnect()
    for line in summary(result):
        print(line)
    print(f"ensemble: {Path(out) / 'ensemble'}  (python -m mtl predict --run {Path(out) / 'ensemble'} "
          f"--input new.tsv --out scores/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

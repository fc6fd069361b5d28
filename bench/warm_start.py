"""Warm starts on every pair: does a study of the other pairs save trials on a new one?

    python bench/warm_start.py                       # 4 target pairs x 5 seeds: about 45 min on 2 cores
    python bench/warm_start.py --seeds 1 --budget 30 --keep         # a smoke run
    python bench/warm_start.py --report /tmp/bench-warm-XXXX        # the table again from a --keep folder

For each target pair (en-de, et-en, ro-en, si-en): a source study, tpe+asha on one joint model
of the three other pairs (`--source-budget` seconds, once per target); then, for each sampler
seed, a cold tpe+asha study on the target pair alone and a warm one, the same with
`--warm-start` from the source (its top 4 configs enqueued first), each `--budget` seconds of
wall clock. The task and the searched keys are those of `bench/search_methods.py` (tiny
encoders, 300 training and 100 dev segments per pair).

Reported, per target pair: the trials (in finishing order) until a COMPLETE trial of the warm
study reaches the cold study's full-budget best, over the trials the cold study needed for it;
median and range over seeds. The issue's goal: <= 0.5 on at least 3 of 4 pairs. Also the best
objective at 25 % of the budget, cold against warm: what a user who stops early gets.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # `import search` must find the package, not bench/search.py
sys.path.insert(1, str(REPO / "bench"))

from search_methods import COLD, METHODS, _at, _best, _reach, _rows, _run, _space, scratch, warm_caches  # noqa: E402

TARGETS = ["en-de", "et-en", "ro-en", "si-en"]
GOAL = 0.5


def run(folder: Path, *, data: str, seeds: list[int], budget: float, source_budget: float) -> None:
    cache = folder / "cache"
    for target in TARGETS:
        at = folder / target
        at.mkdir(parents=True, exist_ok=True)
        others = [p for p in TARGETS if p != target]
        source = _space(at, "source", data=data, cache=cache, seed=0, pairs=others, method=METHODS[COLD])
        print(f"  {target}: source study on {', '.join(others)} ...", file=sys.stderr, flush=True)
        _run(source, source_budget, at / "source.log")
        for seed in seeds:
            for kind in (("cold", "warm") if seed % 2 else ("warm", "cold")):  # neither always first
                space = _space(at, f"{kind}-{seed}", data=data, cache=cache, seed=seed, pairs=[target],
                               method=METHODS[COLD])
                print(f"  {target} seed {seed}: {kind} ...", file=sys.stderr, flush=True)
                _run(space, budget, at / f"{kind}-{seed}.log", *(["--warm-start", "source"] if kind == "warm" else []))


def report(folder: Path, *, budget: float) -> None:
    print(f"{'pair':<6} {'seed':>4} {'cold best':>9} {'cold trials':>11} {'warm trials':>11} {'ratio':>6} "
          f"{'cold @25%':>9} {'warm @25%':>9}")
    met = 0
    lines = []
    for target in TARGETS:
        ratios: list[float | None] = []
        early: list[tuple[float, float]] = []
        seeds = sorted(int(p.stem.split("-")[1]) for p in (folder / target).glob("cold-*.yaml"))
        for seed in seeds:
            cold, warm = (_rows(folder / target / f"{k}-{seed}.yaml") for k in ("cold", "warm"))
            best = _best(cold)
            _, cold_n, _ = _reach(cold, best)
            _, warm_n, _ = _reach(warm, best)
            ratio = None if warm_n is None or not cold_n else warm_n / cold_n
            ratios.append(ratio)
            early.append((_at(cold, budget, 0.25), _at(warm, budget, 0.25)))
            print(f"{target:<6} {seed:>4} {best:>9.4f} {cold_n or '-':>11} {warm_n or 'never':>11} "
                  f"{'-' if ratio is None else f'{ratio:.2f}':>6} {early[-1][0]:>9.4f} {early[-1][1]:>9.4f}")
        never = sum(r is None for r in ratios)
        values = sorted(math.inf if r is None else r for r in ratios)
        median = statistics.median(values) if values else math.inf
        met += median <= GOAL
        text = f"{median:.2f} [{values[0]:.2f}, {values[-1]:.2f}]" if values else "-"
        lines.append(f"{target:<6} | {text.replace('inf', 'never'):<20} | {'yes' if median <= GOAL else 'no':<4} | "
                     f"warm better at 25 %: {sum(w > c for c, w in early)} of {len(early)}"
                     + (f"; never reached in {never}" if never else ""))
    print(f"\nwarm trials to reach the cold best / cold trials, median [min, max] over seeds (never-reached counts\n"
          f"as infinite in the median); goal <= {GOAL}\n")
    print(f"{'pair':<6} | {'ratio':<20} | {'goal':<4} | early")
    print("-" * 80)
    print("\n".join(lines))
    print(f"\ngoal met on {met} of {len(TARGETS)} pairs (asked: at least 3)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="sampler seeds per target pair (default 5)")
    p.add_argument("--budget", type=float, default=40.0, help="wall-clock seconds per cold or warm study (default 40)")
    p.add_argument("--source-budget", type=float, default=60.0,
                   help="wall-clock seconds of each source study (default 60)")
    p.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                   help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    p.add_argument("--keep", action="store_true", help="keep the folder (studies, runs, logs)")
    p.add_argument("--report", metavar="FOLDER", help="print the table again from a --keep folder")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.report and not Path(args.report, "bench.json").is_file():
        p.error(f"--report {args.report}: no bench.json there; pass a folder a --keep run printed")
    if args.report:
        report(Path(args.report), budget=json.loads(Path(args.report, "bench.json").read_text())["budget"])
        return
    if args.seeds < 1 or args.budget <= 0 or args.source_budget <= 0:
        p.error("--seeds must be >= 1, --budget and --source-budget > 0")
    if not (Path(args.data) / "direct-assessments").is_dir():
        p.error(f"--data {args.data}: no direct-assessments/ there; pass the `data/` folder of MLQE-PE")
    command = f"python bench/warm_start.py --seeds {args.seeds} --budget {args.budget:g} " \
              f"--source-budget {args.source_budget:g}"
    with scratch("bench-warm-", command, {"budget": args.budget, "seeds": args.seeds}, keep=args.keep) as folder:
        warm_caches(folder, data=args.data, sizes={p: (300,) for p in TARGETS})
        run(folder, data=args.data, seeds=list(range(1, args.seeds + 1)), budget=args.budget,
            source_budget=args.source_budget)
        report(folder, budget=args.budget)

if __name__ == "__main__":
    main()

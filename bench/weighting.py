"""The weighting strategies on one budget: the table of bench/quality.md from the study of
bench/weighting.yaml (6 strategies x 3 seeds, everything else fixed).

    python -m search.run --space bench/weighting.yaml --data ../shared/data/mlqe-pe
    python bench/weighting.py [--storage sqlite:///studies/weighting.db]

Per strategy: the mean over the seeds (and their range) of the dev objective, of DA Pearson per
pair and of MT-word MCC, the seconds of training per trial, and a paired comparison with fixed
weights (same seeds): on how many seed x pair cells the strategy's DA Pearson is higher.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reports.extract import TrialData, extract, open_study  # noqa: E402

STRATEGIES = ("fixed", "uncertainty", "dwa", "gradnorm", "pcgrad", "famo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--storage", default="sqlite:///studies/weighting.db")
    parser.add_argument("--study", default="weighting")
    args = parser.parse_args()
    data = extract(open_study(args.storage, args.study), importances=False)
    pairs = data.pairs
    by: dict[str, dict[int, TrialData]] = {s: {} for s in STRATEGIES}
    for t in data.complete:
        seed = int(t.config["train"]["seed"])
        by.setdefault(t.weighting, {})[seed] = t

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        return f"{statistics.fmean(values):.3f} ({min(values):.3f}-{max(values):.3f})"

    print(f"{len(data.complete)} complete trials of {len(data.trials)}; mean over seeds (range)\n")
    print("| weighting | seeds | objective | " + " | ".join(f"{p} DA Pearson" for p in pairs)
          + " | MT words MCC (mean of pairs) | train s/trial | DA above fixed (seed x pair) |")
    print("| --- " * (6 + len(pairs)) + "|")
    fixed = by.get("fixed", {})
    for strategy in [s for s in by if by[s]]:
        trials = by[strategy]
        row = [strategy, str(len(trials)), cell([t.values[0] for t in trials.values() if t.values])]
        for p in pairs:
            row.append(cell([t.metrics[p]["da"]["pearson"] for t in trials.values()]))
        row.append(cell([statistics.fmean(t.metrics[p]["word_tags"]["words_mcc"] for p in pairs)
                         for t in trials.values()]))
        row.append(f"{statistics.fmean(t.seconds or 0 for t in trials.values()):.0f}")
        if strategy == "fixed":
            row.append("(reference)")
        else:
            wins = [t.metrics[p]["da"]["pearson"] > fixed[s].metrics[p]["da"]["pearson"]
                    for s, t in trials.items() if s in fixed for p in pairs]
            row.append(f"{sum(wins)} of {len(wins)}")
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The quality tables of bench/quality.md, read from the studies of issue 7 (run by hand).

    python -m search.run --space spaces/minilm_qe.yaml   # pretrained MiniLM, 4 tasks: ~1 hour on 2 cores
    python -m search.run --space spaces/minilm_da.yaml   # the same budget, da only
    python -m search.run --space spaces/tiny_qe.yaml     # the same tasks, an encoder built from config
    python -m mtl train --config runs/minilm_qe/best.yaml --out runs/minilm_qe-best \\
        --set data.max_eval_samples=null                 # the exported best config, retrained; full dev
    python bench/quality.py                              # the tables, as markdown

Every number is on dev (the trials score the first `data.max_eval_samples` dev segments of
each pair; the retrain scores all of them). Intervals: 95 % bootstrap percentiles over the
segments, every config resampled on the same segments (reports.bootstrap); p: the share of
resamples on which the first config is not better than the second (one-sided, paired).
The floor: the NMT system's own `model_scores` against DA z_mean, with no training.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAIRS = ("ro-en", "et-en", "si-en", "en-de")
STUDIES = {"minilm_qe": "MiniLM, 4 tasks", "minilm_da": "MiniLM, da only", "tiny_qe": "from scratch, 4 tasks"}


def _load(name: str, studies: Path):
    import optuna

    from reports.extract import extract

    db = studies / f"{name}.db"
    if not db.exists():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return extract(optuna.load_study(study_name=name, storage=f"sqlite:///{db}"), importances=False)


def _best(data, by: str = "objective"):
    """The best COMPLETE trial by its recorded objective."""
    done = [t for t in data.complete if t.values]
    return max(done, key=lambda t: t.values[0]) if done else None


def _da(trial, pair: str) -> float:
    return trial.metrics.get(pair, {}).get("da", {}).get("pearson", float("nan"))


def _aligned(trials: dict[str, object], pair: str, root: str, max_samples: int | None):
    """Gold DA and each named trial's DA predictions on the same dev segments."""
    from mtl.data.mlqe import read_pair
    from reports.bootstrap import predictions_path, read_predictions

    gold = {r["index"]: r["da"] for r in read_pair(root, pair, "dev")[:max_samples]}
    preds = {k: read_predictions(predictions_path(t, pair, "da", split="dev")) for k, t in trials.items()}
    common = sorted(set(gold).intersection(*(set(p) for p in preds.values())))
    return np.array([gold[i] for i in common]), {k: np.array([p[i] for i in common]) for k, p in preds.items()}


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v == v else "-"


def _counts(data) -> str:
    states = [t.state for t in data.trials if not t.interrupted]
    done = [s for s in states if s in ("COMPLETE", "PRUNED", "FAIL")]
    seconds = sum(t.seconds or 0 for t in data.trials)
    return (f"{len(done)} trials finished ({states.count('COMPLETE')} complete, {states.count('PRUNED')} pruned, "
            f"{states.count('FAIL')} failed), {seconds / 60:.0f} min of trial time")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--studies", type=Path, default=REPO / "studies", help="folder of the studies' SQLite files")
    p.add_argument("--retrain", type=Path, default=REPO / "runs" / "minilm_qe-best",
                   help="run directory of the retrained best config (its metrics.json)")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mlqe-pe"), help="MLQE-PE data root")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    args = p.parse_args(argv)

    from mtl.evaluate import model_score_floor
    from reports.aggregate import aggregate
    from reports.bootstrap import bootstrap, interval, paired_p

    data = {name: _load(name, args.studies) for name in STUDIES}
    missing = [name for name, d in data.items() if d is None]
    if "minilm_qe" in missing:
        print(f"no study {args.studies / 'minilm_qe.db'}: run the searches first (see --help)", file=sys.stderr)
        return 2
    mt = data["minilm_qe"]
    best = {name: _best(d) for name, d in data.items() if d is not None}
    max_samples = best["minilm_qe"].config["data"].get("max_eval_samples")
    print("## The studies\n")
    for name, d in data.items():
        b = best.get(name)
        print(f"- `{name}` ({STUDIES[name]}): " + (_counts(d) if d is not None else "not run")
              + (f"; best objective {b.values[0]:.3f} (trial {b.number})" if b is not None else ""))

    print(f"\n## Best configs against the floor, DA Pearson on the first {max_samples} dev segments per pair\n")
    names = [n for n in STUDIES if best.get(n) is not None]
    print("| pair | floor: model_scores | " + " | ".join(f"{STUDIES[n]} (trial {best[n].number}) [95% CI]"
                                                    for n in names) + " | p(4 tasks <= da only) |")
    print("| --- " * (len(names) + 3) + "|")
    for pair in PAIRS:
        floor = model_score_floor(args.data, pair, "dev", max_samples=max_samples)
        gold, preds = _aligned({n: best[n] for n in names}, pair, args.data, max_samples)
        samples = bootstrap(preds, gold, metric="pearson", n=args.resamples, seed=0)
        cells = []
        for n in names:
            lo, hi = interval(samples[n])
            cells.append(f"{_da(best[n], pair):.3f} [{lo:.3f}, {hi:.3f}]")
        p_mt = (_fmt(paired_p(samples["minilm_qe"], samples["minilm_da"], higher_is_better=True))
                if "minilm_da" in samples else "-")
        print(f"| {pair} | {floor:.3f} | " + " | ".join(cells) + f" | {p_mt} |")

    if best.get("tiny_qe") is not None:
        print(f"\n## From scratch vs pretrained: the best configs of the two 4-task studies, first {max_samples} "
              "dev segments per pair\n")
        print("| pair | DA Pearson: scratch / MiniLM | HTER Pearson: scratch / MiniLM | MT words+gaps MCC: scratch / "
              "MiniLM | source MCC: scratch / MiniLM |")
        print("| --- | --- | --- | --- | --- |")
        keys = [("da", "pearson"), ("hter", "pearson"), ("word_tags", "all_mcc"), ("source_tags", "mcc")]
        for pair in PAIRS:
            cells = [" / ".join(_fmt(best[n].metrics.get(pair, {}).get(task, {}).get(metric, float("nan")))
                                for n in ("tiny_qe", "minilm_qe")) for task, metric in keys]
            print(f"| {pair} | " + " | ".join(cells) + " |")

    print("\n## Aggregators: the top configs of the 4-task study by mean and by worst pair (objective)\n")
    agg = aggregate(mt, methods=("mean", "worst"))
    print("| rank | by mean: trial (mean, worst) | by worst: trial (mean, worst) |")
    print("| --- | --- | --- |")
    for rank in range(3):
        cells = []
        for method in ("mean", "worst"):
            order = agg.rankings.get(method, [])
            if rank < len(order):
                t = order[rank]
                cells.append(f"{t} ({_fmt(agg.by_method['mean'][t])}, {_fmt(agg.by_method['worst'][t])})")
            else:
                cells.append("-")
        print(f"| {rank + 1} | " + " | ".join(cells) + " |")

    print("\n## Weighting: the best config of each strategy in the 4-task study (DA Pearson per pair)\n")
    print("| weighting | complete trials | best trial | lr | features.sentence | objective | " + " | ".join(PAIRS) + " |")
    print("| --- " * (6 + len(PAIRS)) + "|")
    for strategy in ("fixed", "uncertainty", "dwa", "gradnorm"):
        group = [t for t in mt.complete if t.weighting == strategy and t.values]
        if not group:
            print(f"| {strategy} | 0 | - | - | - | - | " + " | ".join("-" for _ in PAIRS) + " |")
            continue
        t = max(group, key=lambda t: t.values[0])
        lr = t.config["train"]["lr"]
        feats = t.config.get("features", {}).get("sentence", "none")
        print(f"| {strategy} | {len(group)} | {t.number} | {lr:.2g} | {feats} | {t.values[0]:.3f} | "
              + " | ".join(_fmt(_da(t, pair)) for pair in PAIRS) + " |")

    metrics_file = args.retrain / "metrics.json"
    print(f"\n## The exported best config retrained (`{args.retrain.relative_to(REPO) if args.retrain.is_relative_to(REPO) else args.retrain}`), full dev\n")
    if not metrics_file.exists():
        print(f"not retrained: no {metrics_file}")
        return 0
    retrained = json.loads(metrics_file.read_text())["metrics"]
    print("| pair | floor: model_scores | DA Pearson | clears the floor | HTER Pearson | MT words+gaps MCC | source MCC |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for pair in PAIRS:
        floor = model_score_floor(args.data, pair, "dev")
        m = retrained.get(pair, {})
        da = m.get("da", {}).get("pearson", float("nan"))
        print(f"| {pair} | {floor:.3f} | {_fmt(da)} | {'yes' if da > floor else 'NO'} (by {da - floor:+.3f}) | "
              f"{_fmt(m.get('hter', {}).get('pearson', float('nan')))} | "
              f"{_fmt(m.get('word_tags', {}).get('all_mcc', float('nan')))} | "
              f"{_fmt(m.get('source_tags', {}).get('mcc', float('nan')))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

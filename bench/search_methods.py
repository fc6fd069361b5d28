"""Which search spends less: the search's methods, the same wall-clock budget, several sampler seeds.

    python bench/search_methods.py                      # 5 seeds: about 70 min on 2 cores
    python bench/search_methods.py --seeds 1 --budget 40 --keep     # a smoke run
    python bench/search_methods.py --groups B --keep    # group B only (per_pair: random, TPE, race)
    python bench/search_methods.py --report /tmp/bench-methods-XXXX # the tables again from a --keep folder

The task: tiny encoders (2 layers, hidden 32 or 64) on en-de, et-en and ro-en, 300 training
and 100 dev segments per pair, 1.5 epochs, evaluated every 10 steps; 5 searched keys. Each
search runs `python -m search.run` with `--time-budget` (the budget binds: the trial count is
far above what fits) on 2 workers of 1 CPU. Methods, in a rotating order per seed:

Group A, one model on the three pairs (joint), `--budget` seconds each:
- random+fifo: random sampling, nothing stopped (the reference);
- tpe+asha: TPE (5 random start-up trials) and ASHA on training steps;
- tpe+data: TPE and ASHA on data-size rungs 75 -> 150 -> 300 segments per pair;
- warm tpe+asha: tpe+asha warm-started (`--warm-start`, top 4) from a tpe+asha study of the
  other pair, si-en, run for half the budget just before (its compute is not counted).

Group B, one model per pair (per_pair: racing needs it), `--budget-pairs` seconds each, every
method with its pairs trained one after another in the trial's process, as a race does (a
plain per_pair trial starts a Ray task per pair, which costs more than the training at this
size):
- random+fifo in order: random sampling, never stopped (a race with margin 1e9): the reference;
- tpe+asha in order: TPE and ASHA, never stopped by a race: against the next, it isolates
  what the race's stops buy;
- tpe+asha+race: the same with the race on (`datasets.race`: sign rule, 2 pairs, margin 0).

Reported per method, median and range over seeds: the compute (trial seconds summed in the
order trials finished) until a COMPLETE trial first reaches the group reference's
full-budget best, over the reference's compute; and the best objective reached by 25, 50 and
100 % of the budget (wall clock from the search's first trial). A seed where a method reaches
the reference's best with a config the reference also ran (same seed: TPE's start-up trials
are random's first ones) is marked * and left out of that median. Warm start: trials (in
finishing order) until a COMPLETE trial reaches the cold tpe+asha study's best, against the
trials the cold study needed for it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # `import search` must find the package, not bench/search.py
PAIRS = ["en-de", "et-en", "ro-en"]
SOURCE_PAIR = "si-en"
STARTUP = 5
SEARCH = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3},
    "model.hidden_size": {"type": "categorical", "choices": [32, 64]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "tasks.word_tags.bad_weight": {"type": "float", "low": 1.0, "high": 6.0},
}
TPE = {"name": "tpe", "n_startup_trials": STARTUP}
ASHA = {"name": "asha", "grace_period": 1, "reduction_factor": 2}
METHODS: dict[str, dict[str, Any]] = {  # method -> its group and what its space file sets
    "random+fifo": {"group": "A", "sampler": {"name": "random"}, "scheduler": {"name": "fifo"}},
    "tpe+asha": {"group": "A", "sampler": TPE, "scheduler": ASHA},
    "tpe+data": {"group": "A", "sampler": TPE, "scheduler": {"name": "asha", "reduction_factor": 2,
                                                             "train_samples": [75, 150, 300]}},
    "warm tpe+asha": {"group": "A", "sampler": TPE, "scheduler": ASHA, "warm": True},
    "random+fifo in order": {"group": "B", "sampler": {"name": "random"}, "scheduler": {"name": "fifo"},
                             "per_pair": True, "race": {"rule": "sign", "min_pairs": 2, "margin": 1e9}},
    "tpe+asha in order": {"group": "B", "sampler": TPE, "scheduler": ASHA, "per_pair": True,
                          "race": {"rule": "sign", "min_pairs": 2, "margin": 1e9}},
    "tpe+asha+race": {"group": "B", "sampler": TPE, "scheduler": ASHA, "per_pair": True,
                      "race": {"rule": "sign", "min_pairs": 2, "margin": 0.0}},
}
REFERENCE = {"A": "random+fifo", "B": "random+fifo in order"}
COLD, WARM = "tpe+asha", "warm tpe+asha"
FRACTIONS = (0.25, 0.5, 1.0)


def _space(folder: Path, name: str, *, data: str, cache: Path, seed: int, pairs: list[str],
           method: dict[str, Any]) -> Path:
    base = {"data": {"root": data, "max_train_samples": 300, "max_eval_samples": 100, "cache_dir": str(cache)},
            "model": {"backbone": "bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2, "vocab_size": 2000,
                      "max_length": 128, "dropout": 0.1},
            "tasks": {"da": {}, "word_tags": {}}, "weighting": "fixed",
            "train": {"seed": 13, "lr": 1e-3, "batch_size": 16, "epochs": 1.5, "eval_every": 10, "warmup_ratio": 0.1}}
    datasets: dict[str, Any] = {"pairs": pairs, "mode": "per_pair" if method.get("per_pair") else "joint"}
    if "race" in method:
        datasets["race"] = method["race"]
    space = {"base": base, "search": SEARCH, "datasets": datasets, "objective": {"metrics": ["objective"]},
             "sampler": method["sampler"], "scheduler": method["scheduler"],
             "run": {"trials": 1000, "storage": f"sqlite:///{folder / 'studies.db'}", "study": name,
                     "out": str(folder / "runs" / name), "max_concurrent": 2, "cpus_per_trial": 1, "seed": seed}}
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(REPO)}


def _run(space: Path, budget: float, log: Path, *extra: str) -> float:
    cmd = [sys.executable, "-m", "search.run", "--space", str(space), "--time-budget", str(budget), *extra]
    tick = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True)
    log.write_text(f"$ {' '.join(cmd)}\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8")
    # exit 1 with "no trial completed": the budget ended before any trial did; the table says so
    if proc.returncode != 0 and not (proc.returncode == 1 and "no trial completed" in proc.stderr):
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}:\n{proc.stderr[-3000:]}")
    return time.monotonic() - tick


def warm_caches(folder: Path, *, data: str, sizes: dict[str, tuple[int, ...]]) -> None:
    """Train each pair at each of its data sizes for one step: tokenizers and tokenized slices
    land in the shared cache (``folder/cache``), so that no search pays for them."""
    space = yaml.safe_load(_space(folder, "warm", data=data, cache=folder / "cache", seed=0, pairs=PAIRS,
                                  method=METHODS[COLD]).read_text(encoding="utf-8"))
    tick = time.monotonic()
    for pair, pair_sizes in sizes.items():
        for size in pair_sizes:
            cfg = {**space["base"], "data": {**space["base"]["data"], "pairs": [pair], "max_train_samples": size},
                   "train": {**space["base"]["train"], "max_steps": 1, "eval_every": 1}}
            path = folder / f"warm-{pair}-{size}.yaml"
            path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
            subprocess.run([sys.executable, "-m", "mtl", "train", "--config", str(path), "--out",
                            str(folder / "warm" / f"{pair}-{size}")], cwd=REPO, env=_env(), check=True,
                           capture_output=True)
    print(f"  (caches warmed in {time.monotonic() - tick:.0f} s)", file=sys.stderr, flush=True)


def _rows(space: Path) -> list[dict[str, Any]]:
    """The study's trials with a verdict (interrupted ones left out), in the order they finished."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = yaml.safe_load(space.read_text(encoding="utf-8"))["run"]
    study = optuna.load_study(study_name=run["study"], storage=run["storage"])
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.datetime_complete is None or t.user_attrs.get("interrupted"):
            continue
        rows.append({"number": t.number, "state": t.state.name, "params": t.params,
                     "value": t.value if t.state.name == "COMPLETE" else None,
                     "seconds": float(t.user_attrs.get("seconds", 0.0)),
                     "start": (t.datetime_start or t.datetime_complete).timestamp(),
                     "end": t.datetime_complete.timestamp(), "warm": "warm_start" in t.user_attrs})
    return sorted(rows, key=lambda r: r["end"])


def _best(rows: list[dict[str, Any]]) -> float:
    return max((r["value"] for r in rows if r["value"] is not None), default=float("nan"))


def _reach(rows: list[dict[str, Any]], target: float) -> tuple[float | None, int | None, dict | None]:
    """(compute, trials) spent until a COMPLETE trial first reaches ``target``, and its params."""
    compute = 0.0
    for i, r in enumerate(rows, 1):
        compute += r["seconds"]
        if r["value"] is not None and r["value"] >= target:
            return compute, i, r["params"]
    return None, None, None


def _at(rows: list[dict[str, Any]], budget: float, fraction: float) -> float:
    if not rows:
        return float("nan")
    t0 = min(r["start"] for r in rows)
    return _best([r for r in rows if r["end"] - t0 <= fraction * budget])


def _budget(name: str, budgets: dict[str, float]) -> float:
    return budgets[METHODS[name]["group"]]


def run_seed(folder: Path, *, data: str, seed: int, budgets: dict[str, float], order: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cache = folder.parent / "cache"
    for name in order:
        method = METHODS[name]
        extra: list[str] = []
        if method.get("warm"):
            source = _space(folder, "source", data=data, cache=cache, seed=seed, pairs=[SOURCE_PAIR],
                            method=METHODS[COLD])
            print(f"  seed {seed}: source study on {SOURCE_PAIR} ...", file=sys.stderr, flush=True)
            _run(source, _budget(name, budgets) / 2, folder / "source.log")
            extra = ["--warm-start", "source"]
        space = _space(folder, _slug(name), data=data, cache=cache, seed=seed, pairs=PAIRS, method=method)
        print(f"  seed {seed}: {name} ...", file=sys.stderr, flush=True)
        _run(space, _budget(name, budgets), folder / f"{_slug(name)}.log", *extra)


def _slug(name: str) -> str:
    return name.replace("+", "-").replace(" ", "-")


def _summary(values: list[float | None], fmt: str = "{:.3f}") -> str:
    got = sorted(v for v in values if v is not None)
    if not got:
        return "not reached"
    text = fmt.format(statistics.median(got)) + f" [{fmt.format(got[0])}, {fmt.format(got[-1])}]"
    return text + (f" ({len(got)} of {len(values)})" if len(got) < len(values) else "")


def _methods(groups: str) -> list[str]:
    return [m for m, method in METHODS.items() if method["group"] in groups]


def report(folder: Path, *, budgets: dict[str, float], groups: str = "AB") -> None:
    seeds = sorted(folder.glob("seed-*"), key=lambda p: int(p.name.split("-")[1]))
    per: dict[str, dict[str, list[Any]]] = {m: {"ratio": [], "marked": [], "at": []} for m in _methods(groups)}
    warm_ratio: list[float | None] = []
    print(f"{'seed':>4} {'method':<18} {'best':>7} {'@25%':>7} {'@50%':>7} {'compute s':>9} {'C/P/F':>9} "
          f"{'to reach':>9}")
    for folder_seed in seeds:
        rows = {m: _rows(folder_seed / f"{_slug(m)}.yaml") for m in per}
        for m, rs in rows.items():
            ref = rows[REFERENCE[METHODS[m]["group"]]]
            compute, _, params = _reach(rs, _best(ref))
            marked = params is not None and m not in REFERENCE.values() and params in [r["params"] for r in ref]
            ratio = None if compute is None else compute / sum(r["seconds"] for r in ref)
            at = [_at(rs, _budget(m, budgets), f) for f in FRACTIONS]
            states = "/".join(str(sum(r["state"] == s for r in rs)) for s in ("COMPLETE", "PRUNED", "FAIL"))
            per[m]["ratio"].append(None if marked else ratio)
            per[m]["marked"].append(marked)
            per[m]["at"].append(at)
            reach = "-" if ratio is None else f"{ratio:.3f}{'*' if marked else ''}"
            print(f"{folder_seed.name.split('-')[1]:>4} {m:<18} {at[2]:>7.4f} {at[0]:>7.4f} {at[1]:>7.4f} "
                  f"{sum(r['seconds'] for r in rs):>9.0f} {states:>9} {reach:>9}")
        if WARM not in rows:
            continue
        cold_best = _best(rows[COLD])
        _, cold_trials, _ = _reach(rows[COLD], cold_best)
        _, warm_trials, _ = _reach(rows[WARM], cold_best)
        warm_ratio.append(None if warm_trials is None or not cold_trials else warm_trials / cold_trials)
        print(f"     warm start: {warm_trials or 'never'} trials to reach the cold study's best {cold_best:.4f}, "
              f"which took the cold study {cold_trials} (of {len(rows[COLD])})")
    print(f"\nmedian [min, max] over {len(seeds)} seeds; wall-clock budget per search: group A {budgets['A']:g} s, "
          f"group B {budgets['B']:g} s\n")
    print(f"{'method':<18} | {'compute to reach the reference best':<36} | {'best @25%':<24} | {'best @50%':<24} | "
          f"{'best @100%':<24}")
    print("-" * 136)
    for m, d in per.items():
        cols = [_summary([a[i] for a in d["at"]], "{:.4f}") for i in range(len(FRACTIONS))]
        n_marked = sum(d["marked"])
        reach = _summary(d["ratio"]) + (f", {n_marked}* left out" if n_marked else "")
        print(f"{m:<18} | {reach:<36} | {cols[0]:<24} | {cols[1]:<24} | {cols[2]:<24}")
    if warm_ratio:
        print(f"\nwarm start: trials to reach the cold study's best / the cold study's trials for it = "
              f"{_summary(warm_ratio)} (goal <= 0.5)")
    print("references: group A random+fifo, group B random+fifo in order (to reach: the compute a method spent until\n"
          "a COMPLETE trial reached the reference's full-budget best, over the reference's compute; - never)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=5, help="sampler seeds, each a search per method (default 5)")
    p.add_argument("--first-seed", type=int, default=1, help="the first sampler seed (default 1)")
    p.add_argument("--budget", type=float, default=100.0,
                   help="wall-clock seconds per search of group A, joint (default 100)")
    p.add_argument("--budget-pairs", type=float, default=150.0,
                   help="wall-clock seconds per search of group B, per_pair (default 150)")
    p.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                   help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    p.add_argument("--groups", choices=["A", "B", "AB"], default="AB",
                   help="the groups of methods to run: A (joint), B (per_pair in order) or both (default AB)")
    p.add_argument("--keep", action="store_true", help="keep the folder (studies, runs, logs)")
    p.add_argument("--report", metavar="FOLDER", help="print the tables again from a --keep folder")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    if args.report and not Path(args.report, "bench.json").is_file():
        p.error(f"--report {args.report}: no bench.json there; pass a folder a --keep run printed")
    if args.report:
        saved = json.loads(Path(args.report, "bench.json").read_text())
        report(Path(args.report), budgets=saved["budgets"], groups=saved.get("groups", "AB"))
        return
    if args.seeds < 1 or args.budget <= 0 or args.budget_pairs <= 0:
        p.error("--seeds must be >= 1, --budget and --budget-pairs > 0")
    if not (Path(args.data) / "direct-assessments").is_dir():
        p.error(f"--data {args.data}: no direct-assessments/ there; pass the `data/` folder of MLQE-PE")
    budgets = {"A": args.budget, "B": args.budget_pairs}
    command = (f"python bench/search_methods.py --seeds {args.seeds} --first-seed {args.first_seed} "
               f"--budget {args.budget:g} --budget-pairs {args.budget_pairs:g} --groups {args.groups}")
    with scratch("bench-methods-", command, {"budgets": budgets, "seeds": args.seeds, "groups": args.groups},
                 keep=args.keep) as folder:
        warm_caches(folder, data=args.data, sizes={**{p: (75, 150, 300) for p in PAIRS}, SOURCE_PAIR: (300,)})
        names = _methods(args.groups)
        for i in range(args.seeds):
            order = names[i % len(names):] + names[:i % len(names)]  # no method always first or last
            run_seed(folder / f"seed-{args.first_seed + i}", data=args.data, seed=args.first_seed + i,
                     budgets=budgets, order=order)
        report(folder, budgets=budgets, groups=args.groups)


@contextlib.contextmanager
def scratch(prefix: str, command: str, settings: dict[str, Any], *, keep: bool) -> Iterator[Path]:
    """A new folder for one bench run: its settings in ``bench.json`` (for ``--report``), the
    machine and the command printed first, the time taken last; removed unless ``keep``."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / "bench.json").write_text(json.dumps(settings))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, folder {folder}")
    print(f"# {command}\n")
    tick = time.monotonic()
    try:
        yield folder
    finally:
        print(f"\n# took {time.monotonic() - tick:.0f} s; load average {os.getloadavg()[0]:.2f}")
        if keep:
            print(f"# kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

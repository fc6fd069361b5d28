"""The search's own cost and its use of compute: `search.run` against a plain Optuna loop.

    python bench/search.py                          # both parts: overhead (16 trials), efficiency (3 repeats)
    python bench/search.py --quick                  # smoke run: 4 trials, 1 repeat of 6-trial searches
    python bench/search.py --part overhead --trials 16
    python bench/search.py --part efficiency --repeats 1 --keep
    python bench/search.py --report /tmp/bench-search-XXXX    # part 2's table again from a --keep folder

1. Overhead. N trials of a trainer run of fixed cost (a tiny model, a fixed step count; random
   sampling of `train.lr`, which does not change the cost; no pruning) on 2 workers, run four
   ways, each a subprocess timed from launch to exit: `python -m search.run` (Ray Tune + Optuna +
   SQLite), and a plain `optuna` `study.optimize(objective, n_trials=N, n_jobs=2)` on the same
   sampler, seed and SQLite storage whose objective calls `mtl.train.train` either in the
   optimize thread itself ("plain threads": torch.set_num_threads(1), so the two threads share
   the GIL), in a persistent pool of 2 spawned processes with the trainer imported once ("plain
   processes"), or in a new spawned process per trial ("plain fresh": what Ray does, an actor
   per trial). The trials' own compute is their `seconds` user attribute (config load to end of
   training, as `search.trial` measures it: a fresh process pays transformers' lazy imports there).
2. Efficiency. A real task (tiny models on en-de, et-en, ro-en, joint mode, 5 evaluations per
   trial): TPE + ASHA against random search without early stopping (fifo), the same trial
   budget and sampler seed, per repeat another seed. For each repeat: the compute (trial
   seconds summed in the order trials finished) TPE + ASHA spends until a COMPLETE trial first
   reaches random's best objective, over random's whole compute.

Every search writes its SQLite study and run folders under a temporary folder (--keep keeps it).
Both parts warm the tokenizer and data caches first, so no side pays for them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    sys.path[0] = str(REPO)  # this file is bench/search.py: `import search` must find the package
WORKERS = 2
PLAIN = ("plain threads", "plain processes", "plain fresh")  # the baselines of part 1
OVERHEAD_STEPS = 150  # one tiny run of ~4-6 s on a CPU core
EFFICIENCY_STEPS, EFFICIENCY_EVERY = 150, 30  # 5 evaluations per trial


# --- configs and space files ---------------------------------------------------------------


def _tiny_base(data: str, cache: Path, *, pairs: list[str], train_samples: int, eval_samples: int,
               vocab: int, steps: int, every: int) -> dict[str, Any]:
    return {
        "data": {"root": data, "pairs": pairs, "max_train_samples": train_samples,
                 "max_eval_samples": eval_samples, "cache_dir": str(cache)},
        "model": {"backbone": "bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                  "vocab_size": vocab, "max_length": 128, "dropout": 0.1},
        "tasks": {"da": {}, "word_tags": {}},
        "weighting": "fixed",
        "train": {"seed": 13, "lr": 1e-3, "batch_size": 16, "max_steps": steps, "eval_every": every,
                  "warmup_ratio": 0.1},
    }


def _write_space(folder: Path, name: str, *, base: dict, search: dict, sampler: dict, scheduler: dict,
                 trials: int, seed: int, weights: dict | None = None) -> Path:
    space = {
        "base": base, "search": search, **({"weights": weights} if weights is not None else {}),
        "datasets": {"pairs": base["data"]["pairs"], "mode": "joint"},
        "objective": {"metrics": ["objective"], "aggregator": "mean"},
        "sampler": sampler, "scheduler": scheduler,
        "run": {"trials": trials, "storage": f"sqlite:///{folder / 'studies' / name}.db", "study": name,
                "out": str(folder / "runs" / name), "max_concurrent": WORKERS, "cpus_per_trial": 1,
                "seed": seed},
    }
    path = folder / f"{name}.yaml"
    path.write_text(f"# bench/search.py: python -m search.run --space {path}\n" +
                    yaml.safe_dump(space, sort_keys=False), encoding="utf-8")
    return path


def _overhead_space(folder: Path, *, data: str, cache: Path, trials: int) -> Path:
    base = _tiny_base(data, cache, pairs=["en-de"], train_samples=256, eval_samples=64, vocab=1000,
                      steps=OVERHEAD_STEPS, every=OVERHEAD_STEPS // 3)
    return _write_space(folder, "overhead", base=base, trials=trials, seed=0,
                        search={"train.lr": {"type": "float", "low": 1e-4, "high": 3e-3, "log": True}},
                        sampler={"name": "random"}, scheduler={"name": "fifo"})


EFFICIENCY_SEARCH = {
    "train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "train.warmup_ratio": {"type": "float", "low": 0.0, "high": 0.3},
    "model.hidden_size": {"type": "categorical", "choices": [32, 64]},
    "model.dropout": {"type": "float", "low": 0.0, "high": 0.3},
    "tasks.word_tags.bad_weight": {"type": "float", "low": 1.0, "high": 6.0},
}
STARTUP = 5  # TPE's random start-up trials
EFFICIENCY_SIDES = {  # side -> (sampler, scheduler)
    "random+fifo": ({"name": "random"}, {"name": "fifo"}),
    "tpe+asha": ({"name": "tpe", "n_startup_trials": STARTUP},
                 {"name": "asha", "grace_period": 1, "reduction_factor": 2}),
}


def _efficiency_space(folder: Path, side: str, *, data: str, cache: Path, trials: int, seed: int) -> Path:
    base = _tiny_base(data, cache, pairs=["en-de", "et-en", "ro-en"], train_samples=256,
                      eval_samples=150, vocab=2000, steps=EFFICIENCY_STEPS, every=EFFICIENCY_EVERY)
    sampler, scheduler = EFFICIENCY_SIDES[side]
    return _write_space(folder, side.replace("+", "-"), base=base, search=EFFICIENCY_SEARCH, weights={},
                        sampler=sampler, scheduler=scheduler, trials=trials, seed=seed)


# --- children: the cache warm-up and the plain Optuna loop ---------------------------------


def _train_one(config: dict[str, Any], run_dir: str) -> dict[str, float]:
    """One trial's training, timed as `search.trial.run_joint` times it (imports excluded)."""
    from mtl.config import config_from_dict
    from mtl.train import train

    started = time.monotonic()
    result = train(config_from_dict(config, source=run_dir), out_dir=run_dir)
    return {"objective": result["objective"], "seconds": time.monotonic() - started}


def _warm_imports() -> None:
    """Import what a trial imports lazily. transformers' lazy module is not thread-safe: two
    optimize threads importing AutoTokenizer at once get an ImportError."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer, PreTrainedTokenizerFast  # noqa: F401

    import mtl.train  # noqa: F401


def _init_worker(warm: bool) -> None:
    import torch

    torch.set_num_threads(1)
    if warm:
        _warm_imports()  # once per worker, as a long-lived pool would


def _child_warm(space_path: str) -> dict[str, Any]:
    """Train the base config for one step: tokenizer and data slices land in the cache."""
    from mtl.config import to_dict
    from search.space import load_space

    space = load_space(space_path)
    cfg = to_dict(space.trial_config({}))
    cfg["train"] = {**cfg["train"], "max_steps": 1, "eval_every": 1}
    with tempfile.TemporaryDirectory() as tmp:
        return _train_one(cfg, tmp)


def _child_plain(space_path: str, how: str) -> dict[str, Any]:
    """`study.optimize(objective, n_trials=N, n_jobs=2)` on the space's sampler and storage."""
    import concurrent.futures
    import multiprocessing

    import optuna
    import torch

    from mtl.config import to_dict
    from search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)  # process-wide: each optimize thread then runs on one core
    if how == "threads":
        _warm_imports()
    space = load_space(space_path)
    run = space.run
    out = Path(run.out)
    pool = None
    if how != "threads":  # "fresh": a new process per trial, as Ray starts an actor per trial
        pool = concurrent.futures.ProcessPoolExecutor(
            WORKERS, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
            initargs=(how == "processes",), max_tasks_per_child=1 if how == "fresh" else None)

    def objective(trial: optuna.Trial) -> float:
        config = to_dict(space.trial_config(space.sample(trial)))
        run_dir = str(out / f"trial-{trial.number:04d}")
        result = pool.submit(_train_one, config, run_dir).result() if pool else _train_one(config, run_dir)
        trial.set_user_attr("seconds", round(result["seconds"], 1))
        return result["objective"]

    Path(run.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=run.storage, study_name=run.study, direction=space.directions[0],
                                sampler=space.make_sampler())
    tick = time.monotonic()
    study.optimize(objective, n_trials=run.trials, n_jobs=WORKERS)
    seconds = time.monotonic() - tick
    if pool:
        pool.shutdown()
    return {"optimize_seconds": seconds}


# --- the parent: subprocesses, study reading, tables ---------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "RAY_AUTH_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(REPO)}


def _spawn(cmd: list[str], *, log: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a subprocess from the repository root; its wall time, launch and exit clocks, output."""
    launched = time.time()
    tick = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=env or _env(), capture_output=True, text=True)
    wall = time.monotonic() - tick
    log.write_text(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}", encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); log {log}:\n{proc.stderr[-4000:]}")
    return {"wall": wall, "launched": launched, "exited": launched + wall, "stdout": proc.stdout,
            "load": os.getloadavg()[0]}


def _child(kind: str, space: Path, log: Path, *, how: str = "") -> dict[str, Any]:
    env = {**_env(), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = _spawn([sys.executable, __file__, "--child", kind, "--space", str(space), "--how", how or "threads"],
                 log=log, env=env)
    return {**run, **json.loads(run["stdout"].strip().splitlines()[-1])}


def _search(space: Path, log: Path) -> dict[str, Any]:
    return _spawn([sys.executable, "-m", "search.run", "--space", str(space)], log=log)


def _trials(space: Path) -> list[dict[str, Any]]:
    """The study's trials as plain rows, in the order they finished."""
    import optuna

    from search.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = load_space(space).run
    rows = []
    for t in optuna.load_study(study_name=run.study, storage=run.storage).get_trials(deepcopy=False):
        if t.datetime_complete is None:
            continue
        start, end = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
        peak = max([v for v in t.intermediate_values.values() if v == v] + ([t.value] if t.value is not None else []),
                   default=None)  # the best checkpoint's objective, a pruned trial's included
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "peak": peak,
                     "seconds": float(t.user_attrs.get("seconds", end - start)), "start": start, "end": end,
                     "steps": int(t.user_attrs.get("step", 0)),
                     "interrupted": bool(t.user_attrs.get("interrupted"))})
    return sorted(rows, key=lambda r: r["end"])


def _spans(run: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    first, last = min(r["start"] for r in rows), max(r["end"] for r in rows)
    return {"wall": run["wall"], "startup": first - run["launched"], "span": last - first,
            "teardown": run["exited"] - last, "compute": sum(r["seconds"] for r in rows),
            "held": sum(r["end"] - r["start"] for r in rows), "trials": len(rows), "load": run["load"]}


def overhead(folder: Path, *, data: str, trials: int) -> None:
    print(f"## 1. Overhead: {trials} trials of a fixed-cost tiny run ({OVERHEAD_STEPS} steps, en-de, "
          f"hidden 32, 2 layers), {WORKERS} workers, fifo, random lr\n")
    ticks = time.monotonic()
    sides: dict[str, dict[str, float]] = {}
    for i, side in enumerate(("search", *PLAIN)):
        side_dir = folder / side.replace(" ", "-")
        side_dir.mkdir(parents=True)
        space = _overhead_space(side_dir, data=data, cache=folder / "cache", trials=trials)
        if i == 0:
            warm = _child("warm", space, folder / "warm.log")
            print(f"  (cache warm-up: {warm['seconds']:.1f} s)", file=sys.stderr, flush=True)
        print(f"  {side} ...", file=sys.stderr, flush=True)
        run = _search(space, side_dir / "log.txt") if side == "search" else \
            _child("plain", space, side_dir / "log.txt", how=side.split()[1])
        rows = _trials(space)
        states = {r["state"] for r in rows}
        if states != {"COMPLETE"} or len(rows) != trials:
            raise SystemExit(f"{side}: expected {trials} COMPLETE trials, got {[r['state'] for r in rows]}; "
                             f"see {side_dir / 'log.txt'}")
        sides[side] = _spans(run, rows)
        print(f"  {side}: {run['wall']:.1f} s", file=sys.stderr, flush=True)
    head = (f"{'side':<17} {'wall s':>7} {'start-up s':>10} {'trials span s':>13} {'teardown s':>10} "
            f"{'sum seconds':>11} {'sum held s':>10} {'per trial s':>11} {'load':>5}")
    print(head + "\n" + "-" * len(head))
    for side, s in sides.items():
        print(f"{side:<17} {s['wall']:>7.1f} {s['startup']:>10.1f} {s['span']:>13.1f} {s['teardown']:>10.1f} "
              f"{s['compute']:>11.1f} {s['held']:>10.1f} {s['compute'] / s['trials']:>11.2f} {s['load']:>5.2f}")
    ours = sides["search"]
    print(f"\nsearch wall / sum of trial compute = {ours['wall'] / ours['compute']:.3f} "
          f"(ideal with {WORKERS} workers: {1 / WORKERS:.3f})")
    for side in PLAIN:
        plain = sides[side]
        fixed = (ours["wall"] - plain["wall"]) * WORKERS / trials
        print(f"search wall / {side} wall = {ours['wall'] / plain['wall']:.3f} (goal <= 1.05); per-trial fixed "
              f"overhead = (search - plain) x {WORKERS} / {trials} = {fixed:+.2f} s; start-up {ours['startup']:.1f} s "
              f"vs {plain['startup']:.1f} s, teardown {ours['teardown']:.1f} s vs {plain['teardown']:.1f} s")
    print("a trial is held longer than it computes (datetime_start..complete minus `seconds`), per trial: " +
          ", ".join(f"{side} {(s['held'] - s['compute']) / trials:.2f} s" for side, s in sides.items()))
    print("\nwall: launch to exit of the subprocess; start-up: launch to the first trial's datetime_start (imports,\n"
          "Ray start, study creation); trials span: first start to last complete; teardown: last complete to exit;\n"
          "sum seconds: the trials' `seconds` (config load to end of training; the trainer's imports excluded, but\n"
          "a fresh process pays transformers' lazy imports, ~1 s, in it); sum held: each trial's datetime_complete\n"
          "- datetime_start (Ray: from the searcher's ask, before the trial's actor starts: process start, imports,\n"
          "result reporting); load: 1-min load average when the side ended.")
    print(f"part 1 took {time.monotonic() - ticks:.0f} s\n")


def _to_reach(rows: list[dict[str, Any]], target: float, *, key: str = "value") -> dict[str, Any]:
    """Seconds and steps spent (trials in finishing order) until a trial's `key` first reaches
    `target` (None: never), the trial that did, and the best `key`. key "value": COMPLETE trials
    only (what the search exports); "peak": the best checkpoint of any trial, a pruned one's too."""
    seconds = steps = 0.0
    out: dict[str, Any] = {"seconds": None, "steps": None, "by": None, "best": float("-inf")}
    for r in rows:
        seconds, steps = seconds + r["seconds"], steps + r["steps"]
        if r[key] is not None:
            out["best"] = max(out["best"], r[key])
            if out["by"] is None and r[key] >= target:
                out.update(seconds=seconds, steps=steps, by=r["number"])
    return out


def _side(space: Path, run: dict[str, Any]) -> dict[str, Any]:
    rows = [x for x in _trials(space) if not x["interrupted"]]
    return {"rows": rows, "wall": run["wall"], "load": run["load"], "compute": sum(x["seconds"] for x in rows),
            "steps": sum(x["steps"] for x in rows), "best": _to_reach(rows, float("inf"))["best"],
            "states": {s: sum(x["state"] == s for x in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}}


def _median_ratio(ratios: list[float | None]) -> str:
    med = statistics.median(r if r is not None else float("inf") for r in ratios)
    return f"{med:.3f}" if med != float("inf") else "not reached"


def efficiency(folder: Path, *, data: str, trials: int, repeats: int, seed: int, rerun: bool = True) -> None:
    """Run the searches (rerun=False: read the ones a --keep run left in `folder`) and print the table."""
    print(f"## 2. Efficiency: TPE + ASHA vs random + fifo, {trials} trials each, en-de + et-en + ro-en joint, "
          f"{EFFICIENCY_STEPS} steps with {EFFICIENCY_STEPS // EFFICIENCY_EVERY} evaluations, {WORKERS} workers\n")
    ticks = time.monotonic()
    results = []
    for r in range(repeats):
        row: dict[str, Any] = {"repeat": r, "seed": seed + r}
        order = list(EFFICIENCY_SIDES) if r % 2 == 0 else list(EFFICIENCY_SIDES)[::-1]
        for side in order:
            side_dir = folder / f"repeat-{r}" / side.replace("+", "-")
            if not rerun:
                space = side_dir / f"{side.replace('+', '-')}.yaml"
                row["seed"] = yaml.safe_load(space.read_text(encoding="utf-8"))["run"]["seed"]
                row[side] = _side(space, {"wall": float("nan"), "load": float("nan")})
                continue
            side_dir.mkdir(parents=True)
            space = _efficiency_space(side_dir, side, data=data, cache=folder / "cache", trials=trials,
                                      seed=seed + r)
            if r == 0 and side == order[0]:
                warm = _child("warm", space, folder / "warm.log")
                print(f"  (cache warm-up: {warm['seconds']:.1f} s)", file=sys.stderr, flush=True)
            print(f"  repeat {r} seed {seed + r}: {side} ...", file=sys.stderr, flush=True)
            run = _search(space, side_dir / "log.txt")
            row[side] = _side(space, run)
            print(f"  {side}: {run['wall']:.1f} s", file=sys.stderr, flush=True)
        rand, tpe = row["random+fifo"], row["tpe+asha"]
        reach = _to_reach(tpe["rows"], rand["best"])
        tpe["best"] = reach["best"]
        row["reached"], row["by"] = reach["seconds"], reach["by"]
        row["ratio"] = reach["seconds"] / rand["compute"] if reach["by"] is not None else None
        row["steps_ratio"] = reach["steps"] / rand["steps"] if reach["by"] is not None else None
        peak = _to_reach(tpe["rows"], rand["best"], key="peak")
        tpe["peak"] = peak["best"]
        row["peak_ratio"] = peak["seconds"] / rand["compute"] if peak["by"] is not None else None
        results.append(row)

    head = (f"{'rep':>3} {'seed':>4} | {'random best':>11} {'compute s':>9} {'wall s':>6} {'C/P/F':>8} | "
            f"{'tpe best':>8} {'compute s':>9} {'wall s':>6} {'C/P/F':>8} | {'to reach s':>11} {'by':>4} {'ratio':>6} "
            f"{'steps':>6} {'any ratio':>9} {'load':>9}")
    print(head + "\n" + "-" * len(head))
    cpf = lambda s: "/".join(str(s["states"][k]) for k in ("COMPLETE", "PRUNED", "FAIL"))  # noqa: E731
    for row in results:
        rand, tpe = row["random+fifo"], row["tpe+asha"]
        reach = f"{row['reached']:.1f}" if row["reached"] is not None else "not reached"
        ratio = f"{row['ratio']:.3f}" if row["ratio"] is not None else "> 1"
        steps = f"{row['steps_ratio']:.3f}" if row["steps_ratio"] is not None else "> 1"
        by = "-" if row["by"] is None else f"{row['by']}{'*' if row['by'] < STARTUP else ''}"
        peak = f"{row['peak_ratio']:.3f}" if row["peak_ratio"] is not None else f"> 1 ({tpe['peak']:.3f})"
        print(f"{row['repeat']:>3} {row['seed']:>4} | {rand['best']:>11.4f} {rand['compute']:>9.1f} "
              f"{rand['wall']:>6.0f} {cpf(rand):>8} | {tpe['best']:>8.4f} {tpe['compute']:>9.1f} {tpe['wall']:>6.0f} "
              f"{cpf(tpe):>8} | {reach:>11} {by:>4} {ratio:>6} {steps:>6} {peak:>9} "
              f"{rand['load']:>4.2f}/{tpe['load']:<4.2f}")
    print(f"\nmedian over {len(results)} repeat(s): compute to reach random's best / random's compute = "
          f"{_median_ratio([x['ratio'] for x in results])} (goal <= 0.333; reached in "
          f"{sum(x['ratio'] is not None for x in results)} of {len(results)}); counting pruned trials' best "
          f"checkpoints: {_median_ratio([x['peak_ratio'] for x in results])}; in steps: "
          f"{_median_ratio([x['steps_ratio'] for x in results])}; reached by a shared start-up trial in "
          f"{sum(x['by'] is not None and x['by'] < STARTUP for x in results)} of {len(results)}")
    print(f"median compute tpe+asha / random = "
          f"{statistics.median(x['tpe+asha']['compute'] / x['random+fifo']['compute'] for x in results):.3f}; "
          f"median best random {statistics.median(x['random+fifo']['best'] for x in results):.4f}, "
          f"tpe+asha {statistics.median(x['tpe+asha']['best'] for x in results):.4f}")
    print("\nbest: the best COMPLETE trial's objective (dev, mean over pairs; higher is better); compute: the sum of\n"
          "the trials' `seconds`; to reach: tpe+asha's compute, summed in the order its trials finished (pruned ones\n"
          "included), until a COMPLETE trial's objective >= random's best, by trial number `by`; ratio = to reach /\n"
          "random's compute; steps: the same ratio counted in training steps (blind to load and model size);\n"
          f"by*: one of the first {STARTUP} trials, TPE's random start-up, which with the same seed are exactly\n"
          "random's first trials (the same configs): reaching random's best there says nothing of TPE or ASHA\n"
          "beyond ASHA not pruning it;\n"
          "any ratio: the same where a pruned trial's best checkpoint counts too (the search never exports it;\n"
          "in parentheses tpe+asha's best such value when not reached); "
          "C/P/F: complete/pruned/failed; load: 1-min load average at the end of each search (random/tpe).")
    print(f"part 2 took {time.monotonic() - ticks:.0f} s\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("overhead", "efficiency", "both"), default="both",
                        help="which part to run (default both)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 4 overhead trials, 1 efficiency repeat of 6-trial searches")
    parser.add_argument("--trials", type=int, default=None, help="overhead trials (default 16, --quick 4)")
    parser.add_argument("--search-trials", type=int, default=None,
                        help="trials of each efficiency search (default 20, --quick 6)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="efficiency repeats, each a random+fifo and a tpe+asha search (default 3, --quick 1)")
    parser.add_argument("--seed", type=int, default=1, help="sampler seed of the first repeat (default 1)")
    parser.add_argument("--data", default=str((REPO / "../shared/data/mlqe-pe").resolve()),
                        help="MLQE-PE data root (default: ../shared/data/mlqe-pe from the repository root)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (studies, runs, logs)")
    parser.add_argument("--report", metavar="FOLDER",
                        help="print part 2's table again from the folder a --keep run left (no training; wall and "
                             "load unknown)")
    parser.add_argument("--child", choices=("warm", "plain"), help=argparse.SUPPRESS)
    parser.add_argument("--space", help=argparse.SUPPRESS)
    parser.add_argument("--how", choices=("threads", "processes", "fresh"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # the tables interleave with the progress on stderr
    if args.child:
        result = _child_warm(args.space) if args.child == "warm" else _child_plain(args.space, args.how)
        print(json.dumps(result))
        return
    trials = args.trials or (4 if args.quick else 16)
    search_trials = args.search_trials or (6 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 3)
    if min(trials, search_trials, repeats) < 1:
        parser.error("--trials, --search-trials and --repeats must be >= 1")
    if not (Path(args.data) / "direct-assessments").is_dir():
        parser.error(f"--data {args.data}: no direct-assessments/ there; pass the `data/` folder of MLQE-PE")

    if args.report:
        found = sorted(Path(args.report, "efficiency").glob("repeat-*"))
        if not found:
            parser.error(f"--report {args.report}: no efficiency/repeat-*/ there")
        first = next(found[0].glob("*/*.yaml"))
        efficiency(Path(args.report, "efficiency"), data=args.data, repeats=len(found), seed=args.seed, rerun=False,
                   trials=yaml.safe_load(first.read_text(encoding="utf-8"))["run"]["trials"])
        return
    folder = Path(tempfile.mkdtemp(prefix="bench-search-"))
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPU cores, load average "
          f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min), folder {folder}\n")
    try:
        if args.part in ("overhead", "both"):
            (folder / "overhead").mkdir()
            overhead(folder / "overhead", data=args.data, trials=trials)
        if args.part in ("efficiency", "both"):
            (folder / "efficiency").mkdir()
            efficiency(folder / "efficiency", data=args.data, trials=search_trials, repeats=repeats, seed=args.seed)
    finally:
        print(f"# load average at the end {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.keep:
            print(f"# kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

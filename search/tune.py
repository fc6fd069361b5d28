"""Ray Tune runs the trials: the only module of the project that imports `ray`.

Thin translation: a `Searcher` that asks `search.study.Study` for trials and tells it what
Ray saw, a `Callback` that records errors with Ray's reason and draws the progress line, the
trial function (`search.trial` does the work) and the Tuner set-up. Ray's schedulers stop
bad trials; Ray places them (`--address` attaches to a running cluster).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.search import Searcher

from search.study import WORKER_FILE, Study
from search.trial import PairProgress, run_joint, train_pair

log = logging.getLogger(__name__)

METRIC = "score"  # the first objective, aggregated over pairs: what Ray's schedulers compare


# --- the scheduler registry: names -> Ray classes (options validated in search.space) -------


def _asha(metric: str, mode: str, args: dict[str, Any], *, brackets: int = 1):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    args = {"max_t": 100, "grace_period": 1, "reduction_factor": 2, "brackets": brackets, **args}
    # A trial that reaches max_t is not stopped: it is not worse than the others, and max_t
    # only places the rungs. The trainer's own step budget ends a trial.
    return AsyncHyperBandScheduler(time_attr="training_iteration", metric=metric, mode=mode,
                                   stop_last_trials=False, **args)


def _hyperband(metric: str, mode: str, args: dict[str, Any]):
    # Asynchronous HyperBand (Li et al. 2018: several ASHA brackets). Ray's synchronous
    # HyperBandScheduler pauses and resumes trials, which our trials do not checkpoint for.
    return _asha(metric, mode, {"brackets": 3, **args})


def _median(metric: str, mode: str, args: dict[str, Any]):
    from ray.tune.schedulers import MedianStoppingRule

    return MedianStoppingRule(time_attr="training_iteration", metric=metric, mode=mode,
                              **{"grace_period": 1, "min_samples_required": 3, **args})


def _fifo(metric: str, mode: str, args: dict[str, Any]):
    from ray.tune.schedulers import FIFOScheduler

    return FIFOScheduler()


SCHEDULERS = {"asha": _asha, "hyperband": _hyperband, "median": _median, "fifo": _fifo}


# --- the trial, on a Ray worker -----------------------------------------------------------


def _trial(plan: dict[str, Any]) -> None:
    _threads()
    _record_worker(plan["run_dir"])
    if len(plan["configs"]) == 1 and "all" in plan["configs"]:  # Ray 2.60: tune.report, not train.report
        run_joint(plan, report=tune.report)
    else:
        _per_pair(plan, report=tune.report)


def _threads() -> None:
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    torch.set_num_threads(max(1, int(cpus)))


def _record_worker(run_dir: str) -> None:
    """Free what the last trial of this reused actor left, then write where this trial runs and
    the memory its process holds now (host RSS, CUDA allocated and reserved): the study records
    it, and a figure that grows from trial to trial in one process is a leak."""
    import torch

    gc.collect()
    params, tensor_mb = _alive(torch)
    info: dict[str, Any] = {"host": socket.gethostname(), "node_ip": ray.util.get_node_ip_address(),
                            "node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "torch_threads": torch.get_num_threads(),
                            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "rss_mb_at_start": _rss_mb(),
                            "parameters_alive_at_start": params, "tensor_mb_alive_at_start": tensor_mb}
    if torch.cuda.is_available():
        # cuBLAS keeps a workspace per handle in the caching allocator (~32 MB each, counted as
        # allocated): give it back too, so a packed GPU gets the memory and a leak shows as > 0.
        if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
            torch._C._cuda_clearCublasWorkspaces()
        torch.cuda.empty_cache()
        info.update(device=torch.cuda.get_device_name(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    cuda_allocated_mb_at_start=round(torch.cuda.memory_allocated() / 2**20, 1),
                    cuda_reserved_mb_at_start=round(torch.cuda.memory_reserved() / 2**20, 1))
    else:
        info["device"] = "cpu"
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    (Path(run_dir) / WORKER_FILE).write_text(json.dumps(info), encoding="utf-8")


def _alive(torch) -> tuple[int, float]:
    """Parameters and tensors (MB) still reachable in this process: 0 and 0.0 when a trial
    starts, unless the last trial of this reused actor left a model or data alive."""
    params, size = 0, 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor):
            params += isinstance(obj, torch.nn.Parameter)
            size += obj.element_size() * obj.nelement()
    return params, round(size / 2**20, 2)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def _pair_task(config: dict[str, Any], out_dir: str) -> dict[str, Any]:
    _threads()
    return train_pair(config, out_dir)


def _per_pair(plan: dict[str, Any], *, report) -> None:
    """Each pair trained by its own Ray task inside the trial's placement group, in parallel."""
    progress = PairProgress(plan)
    cpus = plan["pair_cpus"]
    task = ray.remote(_pair_task).options(num_cpus=cpus, num_gpus=plan["pair_gpus"])
    refs = {pair: task.remote(cfg, progress.pair_dir(pair)) for pair, cfg in plan["configs"].items()}
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
    """Ray's view of the study: suggest = ask, results and completions = tell."""

    def __init__(self, study: Study, *, mode: str, extra: dict[str, Any], time_budget: float | None) -> None:
        super().__init__(metric=METRIC, mode=mode)
        self.study = study
        self.extra = extra
        self.time_budget = time_budget
        self.numbers: dict[str, int] = {}  # Ray trial id -> Optuna trial number

    # Ray pickles the Tuner and saves the searcher for `Tuner.restore`, which we never use:
    # the study database is the truth and a rerun reads it. Only plain fields travel.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "study": None}

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(f"study {self.study.name!r} in {self.study.storage_url}\n")

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("resume by running the same command again: the study is read from its database")

    def suggest(self, trial_id: str) -> dict | str | None:
        plan = self.study.poll()
        if plan == "done":
            return Searcher.FINISHED
        if plan is None:  # the budget is taken by running trials, which may yet be interrupted
            return None
        self.numbers[trial_id] = plan.number
        return {**plan.as_dict(), **self.extra}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.numbers and "scores" in result and not result.get("final"):
            self.study.report(self.numbers[trial_id], step=int(result["step"]), scores=list(result["scores"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if error:  # _Events.on_trial_error records it, with Ray's error (it is called right after)
            return
        number = self.numbers.pop(trial_id, None)
        if number is not None:
            self.study.finish(number, result or {}, time_budget=self.time_budget)


class _Events(tune.Callback):
    """Failed trials (with Ray's reason) and the live progress line."""

    def __init__(self, study: Study, searcher: _Searcher, *, stream=None) -> None:
        self.study, self.searcher, self.stream = study, searcher, stream or sys.stderr
        self.last_draw = self.last_print = 0.0
        self.last_line = ""
        self.start_counts = study.counts()
        self.tty = self.stream.isatty()

    def __getstate__(self) -> dict[str, Any]:  # see _Searcher.__getstate__
        return {**self.__dict__, "study": None, "searcher": None, "stream": None}

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        number = self.searcher.numbers.pop(trial.trial_id, None)
        if number is not None:
            self.study.fail(number, ray_error=_ray_error(trial))
            self.draw(force=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self.draw(force=True)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info: Any) -> None:
        number = self.searcher.numbers.get(trial.trial_id)
        if number is not None:
            self.study.restarted(number, _ray_error(trial) or "the trial's process died")

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.draw()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.draw(force=True)
        if self.tty:
            self.stream.write("\n")

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < (1.0 if self.tty else 15.0):
            return
        self.last_draw = now
        line = progress_line(self.study, self.start_counts)
        if not self.tty and line.split(" | ")[:3] == self.last_line.split(" | ")[:3] and now - self.last_print < 60:
            return  # a log file gets a line when something changed, or once a minute
        self.last_line, self.last_print = line, now
        self.stream.write(("\r\033[K" + line) if self.tty else line + "\n")
        self.stream.flush()


def _ray_error(trial) -> str | None:
    """Ray's error for a trial: the text Tune wrote locally (its storage copy syncs later)."""
    local = Path(trial.error_file) if getattr(trial, "error_file", None) else None
    if local is not None and local.exists():
        failures = local.read_text(encoding="utf-8", errors="replace").split("Failure # ")
        return failures[-1].split("\n", 1)[-1].strip() or None  # the latest failure, without its header
    err = trial.get_error()
    return str(err) if err is not None else None


def progress_line(study: Study, start) -> str:
    c = study.counts()
    elapsed = time.monotonic() - study.started
    done_here = c.finished - start.finished
    left = max(0, study.budget - c.finished)
    eta = _clock(elapsed / done_here * left) if done_here else "?"
    best = ""
    trials = study.best_trials()
    if trials:
        t = trials[0]
        best = f"best {', '.join(f'{v:.4f}' for v in t.values)} (trial {t.number}) | "
    return (f"[{study.name}] {c.finished}/{study.budget} finished: {c.complete} complete, {c.pruned} pruned, "
            f"{c.failed} failed | {len(study.in_flight)} running | {best}{_clock(elapsed)} elapsed, ETA {eta}")


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def connect(address: str | None, *, verbose: bool) -> str:
    """Start a local Ray, or attach to a running cluster (`ray.init(address=...)` only).

    Returns:
        The address of the cluster's GCS (recorded in the study).
    """
    if address is None:  # a local Ray: no token, and every address on the loopback
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray's switch for "node IP = 127.0.0.1"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not verbose:  # the study records each failure with its traceback; Ray need not print them too
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        for name in ("ray.tune.tune", "ray.tune.analysis.experiment_analysis"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # "local": a Ray of our own even where `ray start` left a cluster on this machine (plain
    # ray.init() would join it); `--address auto` is how to join one.
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=verbose,
             logging_level=logging.INFO if verbose else logging.WARNING,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
                                       "TOKENIZERS_PARALLELISM": "false"}})
    return ray.get_runtime_context().gcs_address


def disconnect() -> None:
    """Leave the cluster (a local Ray started by `connect` stops with it)."""
    ray.shutdown()


def run_search(study: Study, *, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int,
               time_budget: float | None, verbose: bool, max_failures: int = 0) -> None:
    """Run trials until the study's budget has verdicts (or the time budget, or too many
    failures in a row). Ray must be connected (`connect`)."""
    space = study.space
    mode = "max" if space.metrics[0].direction == "maximize" else "min"
    pairs = len(space.pairs)
    if space.mode == "per_pair":
        # An empty head bundle (the trial's own process only waits and reports), one per pair's task.
        head: dict[str, float] = {}
        bundle = {"CPU": cpus_per_trial / pairs, **({"GPU": gpus_per_trial / pairs} if gpus_per_trial else {})}
        resources = tune.PlacementGroupFactory([head] + [bundle] * pairs)
        extra = {"pair_cpus": cpus_per_trial / pairs, "pair_gpus": gpus_per_trial / pairs}
    else:
        resources = {"cpu": cpus_per_trial, "gpu": gpus_per_trial}
        extra = {}
    searcher = _Searcher(study, mode=mode, extra=extra, time_budget=time_budget)
    make = SCHEDULERS[space.scheduler]
    scheduler = make(METRIC, mode, dict(space.scheduler_args))
    if space.scheduler in ("asha", "hyperband"):
        _seed_rungs(scheduler, study)
    remaining = max(1, study.budget - study.counts().finished)
    tuner = tune.Tuner(
        tune.with_resources(_trial, resources),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=remaining + 1000,
                                    max_concurrent_trials=max_concurrent, time_budget_s=time_budget,
                                    reuse_actors=True, trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=study.name, storage_path=str(study.out / "ray"),
                                  verbose=2 if verbose else 0,
                                  callbacks=[_Events(study, searcher)],
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=max_failures)),
    )
    started = time.monotonic()
    try:
        tuner.fit()
    finally:  # Ray ends trials still running at the time budget (or Ctrl-C) without telling the searcher
        out_of_time = time_budget is not None and time.monotonic() - started >= time_budget
        study.interrupt_in_flight("--time-budget ran out" if out_of_time else "the search stopped while it ran")


def _trial_name(trial) -> str:
    return f"trial-{trial.config['number']:04d}"


def _seed_rungs(scheduler, study: Study) -> None:
    """Give a new ASHA the intermediate values of the trials a previous run finished, so a
    resumed search prunes against them (Ray does not restore rung state: ray#30838)."""
    brackets = getattr(scheduler, "_brackets", None)
    if not brackets or not hasattr(brackets[0], "_rungs"):
        log.warning("this Ray's ASHA keeps its rungs elsewhere: a resumed search prunes against new trials only")
        return
    from optuna.trial import TrialState

    sign = 1 if scheduler._metric_op == 1.0 else -1  # noqa: SLF001 - Ray records metric * op
    for t in study.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        steps = sorted(t.intermediate_values)
        for bracket in brackets:
            for milestone, recorded in bracket._rungs:  # noqa: SLF001
                if len(steps) >= milestone:
                    value = t.intermediate_values[steps[int(milestone) - 1]]
                    if math.isfinite(value):
                        recorded[f"study-{t.number}"] = sign * value

"""The study: an Optuna RDB storage, and the only writer of trial states. No Ray here.

Ray runs the trials; this module decides what they are and what became of them. The
database is the truth: a search that restarts after a crash reads it, marks the trials that
were running as FAIL (reason: interrupted), enqueues their configs again (they resume from
their last checkpoint, in the same run directory) and goes on until `budget` trials have a
verdict. A verdict is COMPLETE, PRUNED (stopped by the scheduler) or FAIL with its reason;
an interrupted trial has none and does not count.

Several drivers may run the same search against one study at once (`search.shared`): each
counts and asks under the study's database lock, so together they finish exactly `budget`
trials; each records heartbeats for its running trials, and the trials of a driver that
died (no heartbeat for a while) are interrupted and enqueued again by the others.

User attributes of every trial: ``values`` (the searched keys as set), ``config`` (the
complete trainer config), ``run_dir``, ``driver``, and when it ends ``metrics``
(``{pair: {task: {metric: v}}}``), ``pair_scores`` (``{metric: {pair: v}}``), ``step``,
``seconds`` -- for a COMPLETE trial those of its best checkpoint, for a PRUNED one those of the
evaluation at which the scheduler stopped it (its value, as Optuna records it); a failed one
``fail_reason`` and ``fail_traceback``; ``worker`` (host, pid, device and the memory in use
when the trial started in its Ray process) once the trial ran.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from mtl.config import ConfigError, to_dict
from search.shared import GRACE, BudgetLock, Heartbeats, make_storage
from search.space import SearchSpace

log = logging.getLogger(__name__)
# We drive heartbeats ourselves (search.shared) with ask/tell, which Optuna warns about.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)

INTERRUPTED = "interrupted"
ERROR_FILE = "error.json"  # written by search.trial into the run directory of a trial that raised
WORKER_FILE = "worker.json"  # written by search.tune where the trial runs: host, pid, device, memory


class StudyMismatch(ValueError):
    """The stored study was created for other objectives than the space's."""


@dataclass(frozen=True)
class TrialPlan:
    """What one trial runs; plain data, sent to the Ray worker as the trial's config."""

    number: int
    run_dir: str
    configs: dict[str, dict[str, Any]]
    """Trainer config(s) as plain dicts: ``{"all": cfg}`` (joint) or ``{pair: cfg}`` (per_pair)."""
    metrics: list[tuple[str, str]]
    """(name, direction) of each objective: ``objective`` or ``task.metric``."""
    aggregator: str
    history: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    """Per metric, the per-pair scores of the trials finished before this one started
    (the reference of the relative aggregators mean_rank and mean_z)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0
    interrupted: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        """Trials with a verdict: they count against the budget."""
        return self.complete + self.pruned + self.failed


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _on_this_host(driver: str | None) -> bool:
    return bool(driver) and ":" in driver and driver.rsplit(":", 1)[0] == socket.gethostname()


def _driver_alive(driver: str | None) -> bool:
    """Whether the driver that owns a RUNNING trial is a live process on this host."""
    if not driver or ":" not in driver:
        return False
    host, pid = driver.rsplit(":", 1)
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Study:
    """One search's study: open or resume it, hand out trials, record what became of them.

    Args:
        space: The validated search space.
        storage: SQLAlchemy URL of the Optuna RDB storage.
        name: Study name.
        out: Folder of the trials' run directories.
        data_root: MLQE-PE data root every trial reads (made absolute: trials run elsewhere).
        budget: How many trials must reach a verdict (all drivers of the study together).
        max_failures_in_a_row: Stop handing out trials after this many consecutive failures.
        heartbeat: Seconds between heartbeats of this driver's running trials.
    """

    def __init__(self, space: SearchSpace, *, storage: str, name: str, out: str | Path, data_root: str,
                 budget: int, max_failures_in_a_row: int, heartbeat: int = 10) -> None:
        self.space = space
        self.storage_url = storage
        self.name = name
        self.out = Path(out).resolve()
        self.data_root = str(Path(data_root).resolve())
        self.budget = budget
        self.max_failures_in_a_row = max_failures_in_a_row
        self.failures_in_a_row = 0
        self.in_flight: dict[int, optuna.Trial] = {}
        self.started = time.monotonic()
        self.heartbeat = heartbeat
        self.study: optuna.Study | None = None
        self.lock: BudgetLock | None = None
        self.beats: Heartbeats | None = None
        self.next_poll = 0.0

    # --- opening and resuming --------------------------------------------------------------

    def open(self) -> Counts:
        """Create the study, or load it and recover the trials a dead driver left RUNNING;
        start this driver's heartbeats (stop them with `close`).

        Raises:
            StudyMismatch: The stored study optimises other directions or metrics.
        """
        storage = make_storage(self.storage_url, heartbeat=self.heartbeat)
        self.lock = BudgetLock(storage, self.name)
        with self.lock():  # one driver creates the study and enqueues the space's configs
            self.study = self._load_or_create(storage)
            self._recover()
        self.beats = Heartbeats(storage, self.heartbeat, running=lambda: [t._trial_id for t in list(self.in_flight.values())],
                                check=self.check_stale)
        self.beats.start()
        return self.counts()

    def close(self) -> None:
        """Stop the heartbeats (the trials still in flight should be interrupted first)."""
        if self.beats is not None:
            self.beats.stop()
            self.beats = None

    def _load_or_create(self, storage: optuna.storages.RDBStorage) -> optuna.Study:
        directions = [m.direction for m in self.space.metrics]
        names = [m.name for m in self.space.metrics]
        exists = self.name in {s.study_name for s in optuna.get_all_study_summaries(storage)}
        if exists:
            study = optuna.load_study(study_name=self.name, storage=storage, sampler=self.space.make_sampler())
            stored = [d.name.lower() for d in study.directions]
            stored_names = study.user_attrs.get("metrics")
            if stored != directions or (stored_names is not None and stored_names != names):
                raise StudyMismatch(
                    f"study {self.name!r} in {self.storage_url} optimises {stored_names or '?'} ({', '.join(stored)}), "
                    f"but {self.space.source} asks for {names} ({', '.join(directions)}); use another --study "
                    f"name or --storage")
            return study
        study = optuna.create_study(storage=storage, study_name=self.name, directions=directions,
                                    sampler=self.space.make_sampler())
        study.set_user_attr("metrics", names)
        study.set_user_attr("aggregator", self.space.aggregator)
        study.set_user_attr("pairs", list(self.space.pairs))
        study.set_user_attr("mode", self.space.mode)
        study.set_user_attr("space_file", str(self.space.source))
        for values in self.space.enqueue:
            study.enqueue_trial(dict(values), user_attrs={"enqueued": True})
        return study

    def _recover(self) -> None:
        """Interrupt the RUNNING trials of dead drivers on this host (a restart after a crash:
        no need to wait for their heartbeats to go stale), then those of any host whose
        heartbeats went stale."""
        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            if t.state != TrialState.RUNNING or t.number in self.in_flight:
                continue
            driver = t.user_attrs.get("driver")
            if _driver_alive(driver) or not _on_this_host(driver):
                continue  # alive, or elsewhere: its heartbeats tell
            self._interrupt(t.number, t.params, t.user_attrs.get("run_dir"), enqueue=t.number not in retried,
                            why=f"its search driver {driver} stopped while it ran")
        self.check_stale()

    def check_stale(self) -> None:
        """Interrupt (and enqueue again) the trials whose driver stopped sending heartbeats.

        Optuna's heartbeats say which trials are stale (no heartbeat for the grace period);
        unlike Optuna's `fail_stale_trials`, the reason is written before the trial is FAIL
        (a finished trial's attributes cannot change), all under the budget lock."""
        assert self.study is not None and self.lock is not None
        storage = self.study._storage  # noqa: SLF001
        with self.lock():
            for trial_id in storage._get_stale_trial_ids(self.study._study_id):  # noqa: SLF001
                trial = storage.get_trial(trial_id)
                if trial.state != TrialState.RUNNING or trial.number in self.in_flight:
                    continue
                self._interrupt(trial.number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True,
                                why=f"no heartbeat from its search driver {trial.user_attrs.get('driver')} for "
                                    f"{self.heartbeat * GRACE} s (the driver died or lost the database)")

    def _interrupt(self, number: int, params: dict[str, Any], run_dir: str | None, *, enqueue: bool,
                   why: str) -> None:
        """FAIL (interrupted) and enqueue the same config, to resume in the same run directory."""
        assert self.study is not None and self.lock is not None
        storage, trial_id = self._storage_trial(number)
        with self.lock():  # another driver may be interrupting it for a stale heartbeat
            if storage.get_trial(trial_id).state.is_finished():
                return
            if enqueue:  # enqueue first: a crash between the two calls leaves a retry, not a lost config
                self.study.enqueue_trial(params, user_attrs={"retry_of": number, "resume_run_dir": run_dir})
            storage.set_trial_user_attr(trial_id, "fail_reason", f"{INTERRUPTED}: {why}")
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        log.info("trial %d: interrupted (%s); its config is enqueued again", number, why)

    def _storage_trial(self, number: int) -> tuple[Any, int]:
        assert self.study is not None
        storage = self.study._storage  # noqa: SLF001 - optuna's public API sets attrs only on live trials
        return storage, storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)  # noqa: SLF001

    # --- handing out trials ----------------------------------------------------------------

    def counts(self) -> Counts:
        """The study's trials by state, all drivers' (cheap: only FAIL trials are read)."""
        assert self.study is not None
        storage, sid = self.study._storage, self.study._study_id  # noqa: SLF001 - counts without reading every trial
        c = Counts(complete=storage.get_n_trials(sid, TrialState.COMPLETE),
                   pruned=storage.get_n_trials(sid, TrialState.PRUNED),
                   running=storage.get_n_trials(sid, TrialState.RUNNING),
                   waiting=storage.get_n_trials(sid, TrialState.WAITING))
        for t in storage.get_all_trials(sid, deepcopy=False, states=(TrialState.FAIL,)):
            if t.user_attrs.get(INTERRUPTED):
                c.interrupted += 1
            else:
                c.failed += 1
        return c

    def stop_reason(self) -> str | None:
        """Why this driver hands out no more trials ("budget": all have a verdict), or None."""
        if self.failures_in_a_row >= self.max_failures_in_a_row:
            return (f"{self.failures_in_a_row} trials failed in a row (limit {self.max_failures_in_a_row}): "
                    f"stopping; see each trial's fail_reason")
        if self.counts().finished >= self.budget:
            return "budget"
        return None

    def ask(self) -> TrialPlan | None:
        """The next trial to run, or None: the budget is spent or taken by running trials (of
        any driver; see `stop_reason` for whether to wait), or too many failed in a row."""
        assert self.study is not None and self.lock is not None
        while self.stop_reason() is None:
            with self.lock():
                c = self.counts()
                if c.finished + c.running >= self.budget:
                    return None
                trial = self.study.ask()  # a WAITING trial first: enqueued configs and retries
                self.study._storage.record_heartbeat(trial._trial_id)  # noqa: SLF001 - stale-able from now on
                trial.set_user_attr("driver", driver_id())
                self.in_flight[trial.number] = trial
            values = self.space.sample(trial)
            trial.set_user_attr("values", _jsonable(values))
            try:
                configs = self._configs(values)
            except ConfigError as e:  # a combination the space's own checks cannot foresee
                self._fail(trial.number, f"invalid config from the space: {e}", None)
                continue
            run_dir = trial.user_attrs.get("resume_run_dir") or self._fresh_dir(trial.number)
            trial.set_user_attr("config", next(iter(configs.values())) if len(configs) == 1 else configs)
            trial.set_user_attr("run_dir", run_dir)
            return TrialPlan(number=trial.number, run_dir=run_dir, configs=configs,
                             metrics=[(m.name, m.direction) for m in self.space.metrics],
                             aggregator=self.space.aggregator, history=self._history())
        return None

    def poll(self) -> TrialPlan | str | None:
        """What the driver does next: a trial to run; "done" when no more will come (the budget
        has its verdicts, or too many failed in a row); None to wait (the budget is taken by
        trials still running, this driver's or another's, which may yet be interrupted).
        Waiting polls the database once per second at most."""
        now = time.monotonic()
        if now < self.next_poll:
            return None
        plan = self.ask()
        if plan is not None:
            return plan
        if self.stop_reason() is not None:
            return "done"
        self.next_poll = now + 1.0
        return None

    def _fresh_dir(self, number: int) -> str:
        """A new trial's run directory; never one that holds something already (an older
        search with the same --out), which the trainer would resume or refuse."""
        path = self.out / f"trial-{number:04d}"
        if path.exists() and any(path.iterdir()):
            path = path.with_name(f"{path.name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        return str(path)

    def _configs(self, values: dict[str, Any]) -> dict[str, dict[str, Any]]:
        if self.space.mode == "per_pair":
            return {pair: to_dict(self.space.trial_config(values, pairs=[pair], data_root=self.data_root))
                    for pair in self.space.pairs}
        return {"all": to_dict(self.space.trial_config(values, data_root=self.data_root))}

    def _history(self) -> dict[str, list[dict[str, float]]]:
        assert self.study is not None
        done = [t.user_attrs.get("pair_scores") for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
        return {m.name: [s[m.name] for s in done if s and m.name in s] for m in self.space.metrics}

    # --- recording -------------------------------------------------------------------------

    def report(self, number: int, *, step: int, scores: list[float], trial: optuna.Trial | None = None) -> None:
        """An intermediate value (single objective only: Optuna keeps none for several)."""
        trial = trial or self.in_flight.get(number)
        if trial is None or len(scores) != 1 or not math.isfinite(scores[0]):
            return
        try:
            trial.report(scores[0], step)  # optuna ignores a second value for the same step
        except UpdateFinishedTrialError:
            self._lost(number)

    def _lost(self, number: int) -> None:
        """Another driver ended a trial of ours (its heartbeats went stale): its retry runs it."""
        if self.in_flight.pop(number, None) is not None:
            log.warning("trial %d was interrupted by another driver (no heartbeat from here for %d s): its "
                        "result is dropped; the retry resumes it from its checkpoint", number, self.heartbeat * GRACE)

    def finish(self, number: int, result: dict[str, Any], *, time_budget: float | None = None) -> str:
        """Record a trial Ray stopped without error: COMPLETE when it ran to its end, PRUNED
        when the scheduler stopped it, interrupted when the time budget ran out.

        Returns:
            The state written: "COMPLETE", "PRUNED", "FAIL" or "interrupted".
        """
        trial = self.in_flight.get(number)
        if trial is None:
            return "unknown"
        assert self.lock is not None
        with self.lock():  # a stale-heartbeat check of another driver must not end it meanwhile
            if not self._still_ours(number):
                return INTERRUPTED
            self.in_flight.pop(number)
            return self._verdict(number, trial, result, time_budget)

    def _verdict(self, number: int, trial: optuna.Trial, result: dict[str, Any], time_budget: float | None) -> str:
        final = bool(result.get("final"))
        if not final and time_budget is not None and time.monotonic() - self.started >= time_budget:
            self._interrupt(number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True,
                            why="--time-budget ran out")
            return INTERRUPTED
        self._record_worker(number, trial.user_attrs.get("run_dir"))
        if "scores" not in result:
            self._fail(number, "the trial ended without reporting a result", None)
            return "FAIL"
        scores = [float(v) for v in result["scores"]]
        for key in ("metrics", "pair_scores"):
            if key in result:
                trial.set_user_attr(key, json.loads(result[key]) if isinstance(result[key], str) else result[key])
        trial.set_user_attr("step", int(result.get("step", 0)))
        trial.set_user_attr("seconds", round(float(result.get("seconds", 0.0)), 1))
        if not all(math.isfinite(v) for v in scores):
            self._fail(number, f"objective is not finite at step {result.get('step')}: {scores} (e.g. constant "
                               f"predictions leave Pearson undefined)", None)
            return "FAIL"
        self.failures_in_a_row = 0
        if final:
            if "curve_scores" in result:  # the last evaluation's point of the learning curve
                self.report(number, step=int(result["curve_step"]), scores=list(result["curve_scores"]), trial=trial)
            self.study.tell(number, scores)
            return "COMPLETE"
        # Ray hands the result that made its scheduler stop the trial to on_trial_complete only
        self.report(number, step=int(result.get("step", 0)), scores=scores, trial=trial)
        self.study.tell(number, state=TrialState.PRUNED)
        return "PRUNED"

    def _still_ours(self, number: int) -> bool:
        """Whether a trial of ours is still RUNNING in the database (not ended by another driver)."""
        storage, trial_id = self._storage_trial(number)
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            return True
        self._lost(number)
        return False

    def _record_worker(self, number: int, run_dir: str | None) -> None:
        """Where the trial ran and the memory its process held when it started (`search.tune`)."""
        path = Path(run_dir) / WORKER_FILE if run_dir else None
        if path is not None and path.exists():
            storage, trial_id = self._storage_trial(number)
            storage.set_trial_user_attr(trial_id, "worker", json.loads(path.read_text(encoding="utf-8")))

    def fail(self, number: int, *, ray_error: str | None) -> None:
        """Record a trial that raised or whose process died; the reason comes from the error
        file the trial wrote, else from Ray's own error."""
        trial = self.in_flight.get(number)
        run_dir = trial.user_attrs.get("run_dir") if trial else None
        reason, tb = None, ray_error
        # the trial's own error file; in per_pair mode, the first pair's that failed
        files = [Path(run_dir) / ERROR_FILE, *sorted(Path(run_dir).glob(f"*/{ERROR_FILE}"))] if run_dir else []
        for path in files:
            if path.exists():
                err = json.loads(path.read_text(encoding="utf-8"))
                reason, tb = err["reason"], err["traceback"]
                break
        if reason is None:
            reason = _last_line(ray_error) or \
                "the trial's process died without a Python error (killed, e.g. out of memory?)"
        assert self.lock is not None
        with self.lock():
            if trial is not None and not self._still_ours(number):
                return
            self._record_worker(number, run_dir)
            self._fail(number, reason, tb)

    def restarted(self, number: int, error: str) -> None:
        """Ray restarts a trial whose process or node died (`max_failures`): count it, say why."""
        trial = self.in_flight.get(number)
        if trial is None:
            return
        restarts = trial.user_attrs.get("restarts", []) + [_last_line(error) or error]
        trial.set_user_attr("restarts", restarts)
        log.warning("trial %d: its process died (%s); Ray restarts it (%d so far), from its last checkpoint",
                    number, restarts[-1], len(restarts))

    def _fail(self, number: int, reason: str, tb: str | None) -> None:
        assert self.study is not None
        self.in_flight.pop(number, None)
        storage, trial_id = self._storage_trial(number)
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        if tb:
            storage.set_trial_user_attr(trial_id, "fail_traceback", tb[-20000:])
        self.study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self.failures_in_a_row += 1
        log.warning("trial %d failed: %s", number, reason)

    def interrupt_in_flight(self, why: str) -> None:
        """Mark every trial this driver still runs as interrupted (a clean shutdown)."""
        for number, trial in list(self.in_flight.items()):
            self.in_flight.pop(number)
            self._interrupt(number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True, why=why)

    # --- the result --------------------------------------------------------------------------

    def best_trials(self) -> list[optuna.trial.FrozenTrial]:
        """The best COMPLETE trial (single objective) or the Pareto front (several)."""
        assert self.study is not None
        if not any(t.state == TrialState.COMPLETE for t in self.study.get_trials(deepcopy=False)):
            return []
        return self.study.best_trials if len(self.space.metrics) > 1 else [self.study.best_trial]


def _last_line(error: str | None) -> str | None:
    """The last non-empty line of an error text (a traceback's exception, Ray's cause), or None."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else None


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

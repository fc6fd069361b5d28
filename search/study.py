"""The study: an Optuna RDB storage, and the only writer of trial states. No Ray here.

Ray runs the trials; this module decides what they are and what became of them. The
database is the truth: a search that restarts after a crash reads it, marks the trials that
were running as FAIL (reason: interrupted), enqueues their configs again (they resume from
their last checkpoint, in the same run directory) and goes on until `budget` trials have a
verdict. A verdict is COMPLETE, PRUNED (stopped by the scheduler) or FAIL with its reason;
an interrupted trial has none and does not count.

A study remembers the space that created it (`SearchSpace.fingerprint`): a rerun with another
space is refused before anything is written (`search.study_space`), unless asked to continue.
Several drivers may share one study (`search.shared`): they count and ask under the database's
lock, finish exactly `budget` trials together, and rerun the trials of a driver whose
heartbeats stopped (`search.recovery`).

User attributes of every trial: ``values`` (the searched keys as set), ``config``
(`reports.record.TrialConfigs`), ``run_dir``, ``driver``, and when it ends ``metrics``
(``{pair: {task: {metric: v}}}``), ``pair_scores`` (``{metric: {pair: v}}``), ``step``,
``seconds``: a COMPLETE trial's of its best checkpoint, a PRUNED one's of the evaluation at
which the scheduler stopped it (``pruned_reason`` when its objective was undefined there, or
the race stopped it, with ``pairs_scored`` or a joint race's ``pair_curve``: `search.racing`);
``train_samples``, the data-size rung it reached (`search.fidelity`); ``warm_start``, the
earlier trial a seed came from (`search.warm_start`); a failed one ``fail_reason`` and
``fail_traceback``; ``worker``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import sqlalchemy
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import TrialState

from mtl.config import ConfigError
from mtl.errors import last_line
from mtl.rundir import RunDir
from search.internals import storage_of, study_id_of, trial_id_of
from search.plan import TrialPlan
from search.racing import incumbent
from search.recovery import driver_id, interrupt_dead_drivers, interrupt_stale
from search.shared import GRACE, BudgetLock, Heartbeats, make_storage, storage_error
from search.space import SearchSpace
from search.study_space import create_or_load
from search.warm_start import Source

log = logging.getLogger(__name__)
# We drive heartbeats ourselves (search.shared) with ask/tell, which Optuna warns about.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used", category=UserWarning)

INTERRUPTED = "interrupted"

__all__ = ["INTERRUPTED", "Counts", "Study"]


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


class Study:
    """One search's study: hand out trials, record what became of them. Build it with :meth:`open`."""

    def __init__(self, space: SearchSpace, optuna_study: optuna.Study, lock: BudgetLock, *, storage: str,
                 out: str | Path, data_root: str, budget: int, max_failures_in_a_row: int, heartbeat: int) -> None:
        self.space = space
        self.optuna = optuna_study
        self.lock = lock
        self.storage_url = storage
        self.name = optuna_study.study_name
        self.out = Path(out).resolve()
        self.data_root = str(Path(data_root).resolve())
        self.budget = budget
        self.max_failures_in_a_row = max_failures_in_a_row
        self.failures_in_a_row = 0
        self.in_flight: dict[int, optuna.Trial] = {}
        self.started = time.monotonic()
        self.heartbeat = heartbeat
        self.next_poll = 0.0
        self.beats: Heartbeats | None = None

    @classmethod
    def open(cls, space: SearchSpace, *, storage: str, name: str, out: str | Path, data_root: str, budget: int,
             max_failures_in_a_row: int, heartbeat: int = 10, allow_space_change: bool = False,
             warm: Callable[[], Sequence[Source]] | None = None) -> Study:
        """Create the study, or load it (refusing one made by another space) and recover the
        trials a dead driver left RUNNING; start this driver's heartbeats (`close` stops them).

        Args:
            space: The validated search space.
            storage: SQLAlchemy URL of the Optuna RDB storage.
            name: Study name.
            out: Folder of the trials' run directories.
            data_root: MLQE-PE data root every trial reads (made absolute: trials run elsewhere).
            budget: How many trials must reach a verdict (all drivers of the study together).
            max_failures_in_a_row: Stop handing out trials after this many consecutive failures.
            heartbeat: Seconds between heartbeats of this driver's running trials.
            allow_space_change: Continue a study created by another space (recorded in it).
            warm: Reads the warm-start seeds (`search.warm_start`); called only for a new study.

        Raises:
            StudyMismatch: The stored study was created by another space (see `search.study_space`).
            SetupError: The database cannot be used.
        """
        rdb = make_storage(storage, heartbeat=heartbeat)
        lock = BudgetLock(rdb, name)
        try:
            with lock():  # one driver creates the study and enqueues the space's configs
                optuna_study = create_or_load(space, rdb, name=name, storage_url=storage,
                                              allow_change=allow_space_change, warm=warm)
                study = cls(space, optuna_study, lock, storage=storage, out=out, data_root=data_root, budget=budget,
                            max_failures_in_a_row=max_failures_in_a_row, heartbeat=heartbeat)
                interrupt_dead_drivers(study)
        except (StorageInternalError, sqlalchemy.exc.SQLAlchemyError) as e:
            raise storage_error(storage, e) from e
        study.beats = Heartbeats(rdb, heartbeat, running=study.running_ids, check=lambda: interrupt_stale(study))
        study.beats.start()
        return study

    def running_ids(self) -> list[int]:
        """The storage ids of this driver's running trials (their heartbeats)."""
        return [trial_id_of(t) for t in list(self.in_flight.values())]

    def close(self) -> None:
        """Stop the heartbeats (the trials still in flight should be interrupted first)."""
        if self.beats is not None:
            self.beats.stop()
            self.beats = None

    def interrupt(self, number: int, params: dict[str, Any], run_dir: str | None, *, enqueue: bool, why: str) -> None:
        """FAIL (interrupted) and enqueue the same config, to resume in the same run directory."""
        storage, trial_id = self._storage_trial(number)
        with self.lock():  # another driver may be interrupting it for a stale heartbeat
            if storage.get_trial(trial_id).state.is_finished():
                return
            if enqueue:  # enqueue first: a crash between the two calls leaves a retry, not a lost config
                self.optuna.enqueue_trial(params, user_attrs={"retry_of": number, "resume_run_dir": run_dir})
            storage.set_trial_user_attr(trial_id, "fail_reason", f"{INTERRUPTED}: {why}")
            storage.set_trial_user_attr(trial_id, INTERRUPTED, True)
            self.optuna.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        log.info("trial %d: interrupted (%s); its config is enqueued again", number, why)

    def _storage_trial(self, number: int) -> tuple[Any, int]:
        storage = storage_of(self.optuna)  # optuna's public API sets attrs only on live trials
        return storage, storage.get_trial_id_from_study_id_trial_number(study_id_of(self.optuna), number)

    # --- handing out trials ----------------------------------------------------------------

    def counts(self) -> Counts:
        """The study's trials by state, all drivers' (cheap: only FAIL trials are read)."""
        storage, sid = storage_of(self.optuna), study_id_of(self.optuna)
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
        while self.stop_reason() is None:
            with self.lock():
                c = self.counts()
                if c.finished + c.running >= self.budget:
                    return None
                trial = self.optuna.ask()  # a WAITING trial first: enqueued configs and retries
                run_dir = trial.user_attrs.get("resume_run_dir") or self._fresh_dir(trial.number)
                trial.set_user_attr("run_dir", run_dir)  # first: a retry after a kill from here reuses it
                storage_of(self.optuna).record_heartbeat(trial_id_of(trial))  # stale-able from now on
                trial.set_user_attr("driver", driver_id())
                self.in_flight[trial.number] = trial
            values = self.space.sample(trial)
            trial.set_user_attr("values", _jsonable(values))
            if outside := self.space.outside(trial.params):  # a queued config from before an edit of the space
                self._fail(trial.number, f"its queued values are outside the space: {outside}", None)
                continue
            try:
                configs = self.space.trial_configs(values, data_root=self.data_root)
            except ConfigError as e:  # a combination the space's own checks cannot foresee
                self._fail(trial.number, f"invalid config from the space: {e}", None)
                continue
            trial.set_user_attr("config", configs.to_attr())
            return TrialPlan.of(self.space, number=trial.number, run_dir=run_dir, configs=configs,
                                history=self._history(), incumbent=incumbent(self.optuna, self.space.metrics[0].name)
                                if self.space.race else None)
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

    def _history(self) -> dict[str, list[dict[str, float]]]:
        done = [t.user_attrs.get("pair_scores") for t in self.optuna.get_trials(deepcopy=False,
                                                                                states=(TrialState.COMPLETE,))]
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
        with self.lock():  # a stale-heartbeat check of another driver must not end it meanwhile
            if not self._still_ours(number):
                return INTERRUPTED
            self.in_flight.pop(number)
            return self._verdict(number, trial, result, time_budget)

    def _verdict(self, number: int, trial: optuna.Trial, result: dict[str, Any], time_budget: float | None) -> str:
        final = bool(result.get("final"))
        stopped = not final and "raced_out" not in result  # by the scheduler, or by the time budget
        if stopped and time_budget is not None and time.monotonic() - self.started >= time_budget:
            self.interrupt(number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True,
                           why="--time-budget ran out")
            return INTERRUPTED
        self._record_worker(number, trial.user_attrs.get("run_dir"))
        if "scores" not in result:
            self._fail(number, "the trial ended without reporting a result", None)
            return "FAIL"
        scores = [float(v) for v in result["scores"]]
        for key in ("metrics", "pair_scores"):  # JSON text: Ray would flatten nested dicts
            if key in result:
                trial.set_user_attr(key, json.loads(result[key]) if isinstance(result[key], str) else result[key])
        trial.set_user_attr("step", int(result.get("step", 0)))
        trial.set_user_attr("seconds", round(float(result.get("seconds", 0.0)), 1))
        for key in ("pairs_scored", "raced_out", "pair_curve", "train_samples"):  # racing, data-size rungs
            if key in result:
                trial.set_user_attr(key, result[key])
        if not all(math.isfinite(v) for v in scores):
            why = (f"objective is not finite at step {result.get('step')}: {scores} (a metric is undefined: "
                   f"constant predictions leave Pearson undefined, one predicted tag MCC)")
            if not final:  # the scheduler stopped it: an undefined objective ranks last
                trial.set_user_attr("pruned_reason", why)
                self.optuna.tell(number, state=TrialState.PRUNED)
                return "PRUNED"
            self._fail(number, why, None)
            return "FAIL"
        self.failures_in_a_row = 0
        if "raced_out" in result:
            trial.set_user_attr("pruned_reason", result["raced_out"])
        if final:
            if "curve_scores" in result:  # the last evaluation's point of the learning curve
                self.report(number, step=int(result["curve_step"]), scores=list(result["curve_scores"]), trial=trial)
            self.optuna.tell(number, scores)
            return "COMPLETE"
        # Ray hands the result that made its scheduler stop the trial to on_trial_complete only
        self.report(number, step=int(result.get("report_step", result.get("step", 0))), scores=scores, trial=trial)
        self.optuna.tell(number, state=TrialState.PRUNED)
        return "PRUNED"

    def _still_ours(self, number: int) -> bool:
        """Whether a trial of ours is still RUNNING in the database (not ended by another driver)."""
        storage, trial_id = self._storage_trial(number)
        if storage.get_trial(trial_id).state == TrialState.RUNNING:
            return True
        self._lost(number)
        return False

    def _record_worker(self, number: int, run_dir: str | None) -> None:
        """Where the trial ran and the memory its process held when it started (`search.worker`)."""
        worker = RunDir(run_dir).read_json("worker.json") if run_dir else None
        if worker is not None:
            storage, trial_id = self._storage_trial(number)
            storage.set_trial_user_attr(trial_id, "worker", worker)

    def fail(self, number: int, *, ray_error: str | None) -> None:
        """Record a trial that raised or whose process died; the reason comes from the error
        file the trial wrote, else from Ray's own error."""
        trial = self.in_flight.get(number)
        run_dir = trial.user_attrs.get("run_dir") if trial else None
        reason, tb = None, ray_error
        if run_dir:  # the trial's own error file; in per_pair mode, the first pair's that failed
            run = RunDir(run_dir)
            for folder in [run, *(RunDir(p.parent) for p in sorted(run.path.glob(f"*/{run.error.name}")))]:
                err = folder.read_json(folder.error.name)
                if err is not None:
                    reason, tb = err.get("reason"), err.get("traceback")
                    break
        if reason is None:
            reason = last_line(ray_error) or ("the trial's process died without a Python error (killed, e.g. "
                                              "out of memory?)")
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
        restarts = [*trial.user_attrs.get("restarts", []), last_line(error) or error]
        trial.set_user_attr("restarts", restarts)
        log.warning("trial %d: its process died (%s); Ray restarts it (%d so far), from its last checkpoint",
                    number, restarts[-1], len(restarts))

    def _fail(self, number: int, reason: str, tb: str | None) -> None:
        self.in_flight.pop(number, None)
        storage, trial_id = self._storage_trial(number)
        storage.set_trial_user_attr(trial_id, "fail_reason", reason)
        if tb:
            storage.set_trial_user_attr(trial_id, "fail_traceback", tb[-20000:])
        self.optuna.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        self.failures_in_a_row += 1
        log.warning("trial %d failed: %s", number, reason)

    def interrupt_in_flight(self, why: str) -> None:
        """Mark every trial this driver still runs as interrupted (a clean shutdown)."""
        for number, trial in list(self.in_flight.items()):
            self.in_flight.pop(number)
            self.interrupt(number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True, why=why)

    # --- the result --------------------------------------------------------------------------

    def best_trials(self) -> list[optuna.trial.FrozenTrial]:
        """The best COMPLETE trial (single objective) or the Pareto front (several)."""
        if not any(t.state == TrialState.COMPLETE for t in self.optuna.get_trials(deepcopy=False)):
            return []
        return self.optuna.best_trials if len(self.space.metrics) > 1 else [self.optuna.best_trial]


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}

"""Finding the trials of dead drivers: a driver that stopped on this host, or one whose heartbeats
went stale (any host). Their trials are interrupted and enqueued again by `Study.interrupt`."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

import optuna
from optuna.trial import TrialState

from search.internals import stale_trial_ids, storage_of, study_id_of
from search.shared import GRACE

__all__ = ["Recoverable", "driver_id", "interrupt_dead_drivers", "interrupt_stale"]


class Recoverable(Protocol):
    """What recovery needs of a driver's study (`search.study.Study` is one)."""

    @property
    def optuna(self) -> optuna.Study:
        """The Optuna study."""

    @property
    def in_flight(self) -> Mapping[int, Any]:
        """This driver's running trials by number."""

    @property
    def heartbeat(self) -> int:
        """Seconds between heartbeats."""

    def lock(self) -> AbstractContextManager[None]:
        """The study's budget lock (see `search.shared.BudgetLock`)."""

    def interrupt(self, number: int, params: dict[str, Any], run_dir: str | None, *, enqueue: bool, why: str) -> None:
        """FAIL a trial as interrupted, enqueueing its config again when ``enqueue``."""


def driver_id() -> str:
    """This driver, as a trial's ``driver`` attribute names it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _on_this_host(driver: str | None) -> bool:
    return bool(driver) and ":" in str(driver) and str(driver).rsplit(":", 1)[0] == socket.gethostname()


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


def interrupt_dead_drivers(study: Recoverable) -> None:
    """Interrupt the RUNNING trials of dead drivers on this host (a restart after a crash: no
    need to wait for their heartbeats to go stale), then those of any host gone stale."""
    trials = study.optuna.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for t in trials:
        if t.state != TrialState.RUNNING or t.number in study.in_flight:
            continue
        driver = t.user_attrs.get("driver")
        if _driver_alive(driver) or not _on_this_host(driver):
            continue  # alive, or elsewhere: its heartbeats tell
        study.interrupt(t.number, t.params, t.user_attrs.get("run_dir"), enqueue=t.number not in retried,
                        why=f"its search driver {driver} stopped while it ran")
    interrupt_stale(study)


def interrupt_stale(study: Recoverable) -> None:
    """Interrupt (and enqueue again) the trials whose driver stopped sending heartbeats.

    Optuna's heartbeats say which trials are stale (no heartbeat for the grace period);
    unlike Optuna's `fail_stale_trials`, the reason is written before the trial is FAIL
    (a finished trial's attributes cannot change), all under the budget lock."""
    storage = storage_of(study.optuna)
    with study.lock():
        for trial_id in stale_trial_ids(storage, study_id_of(study.optuna)):
            trial = storage.get_trial(trial_id)
            if trial.state != TrialState.RUNNING or trial.number in study.in_flight:
                continue
            study.interrupt(trial.number, trial.params, trial.user_attrs.get("run_dir"), enqueue=True,
                            why=f"no heartbeat from its search driver {trial.user_attrs.get('driver')} for "
                                f"{study.heartbeat * GRACE} s (the driver died or lost the database)")

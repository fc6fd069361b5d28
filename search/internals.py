"""Every use of a private API of Optuna, Ray or torch, in one place, each with the public one missing.

When a library grows the public alternative, only this module changes. Nothing here imports
ray: the Ray objects are passed in.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution

__all__ = ["asha_rungs", "clear_cublas_workspaces", "distribution_contains", "frozen_trial_id", "queued_params",
           "scheduler_sign", "stale_trial_ids", "storage_of", "study_id_of", "trial_id_of"]


def storage_of(study: optuna.Study) -> Any:
    """The study's storage. Public API missing: `Study` does not expose its storage, and the
    public `Study` methods cannot set attributes of a trial that is not live in this process
    (a dead driver's trial), nor count trials by state without reading them all."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """The study's id in its storage. Public API missing: storage methods take the id, `Study` hides it."""
    return study._study_id


def trial_id_of(trial: optuna.Trial) -> int:
    """A live trial's id in the storage. Public API missing: heartbeats (`record_heartbeat`) take the id."""
    return trial._trial_id


def stale_trial_ids(storage: Any, study_id: int) -> list[int]:
    """The RUNNING trials whose heartbeat went stale. Public API missing: Optuna's own
    `fail_stale_trials` marks them FAIL before anyone can record why (a finished trial's
    attributes cannot change), so we find them and end them ourselves."""
    return list(storage._get_stale_trial_ids(study_id))


def distribution_contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether a distribution can sample ``value`` (in its internal representation). Public API
    missing: `BaseDistribution` has no public membership test; Optuna uses `_contains` itself
    to check a stored trial's params against a distribution."""
    return bool(dist._contains(dist.to_internal_repr(value)))


def asha_rungs(scheduler: Any) -> list[Any] | None:
    """The rungs of Ray's AsyncHyperBandScheduler, one list per bracket of ``(milestone,
    recorded)``; None when this Ray keeps them elsewhere. Public API missing: Ray does not
    restore or seed rung state (ray#30838), so a resumed search seeds it from the study."""
    brackets = getattr(scheduler, "_brackets", None)
    if not brackets or not hasattr(brackets[0], "_rungs"):
        return None
    return [bracket._rungs for bracket in brackets]


def scheduler_sign(scheduler: Any) -> float:
    """+1 when Ray's scheduler records ``metric`` as is (mode max), -1 when negated (mode min).
    Public API missing: rungs hold ``metric * _metric_op``."""
    return 1.0 if scheduler._metric_op == 1.0 else -1.0


def clear_cublas_workspaces(torch: Any) -> None:
    """Give back the cuBLAS workspaces (~32 MB per handle, counted as allocated) that a reused
    process keeps. Public API missing: `torch.cuda.empty_cache` leaves them."""
    if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
        torch._C._cuda_clearCublasWorkspaces()


def frozen_trial_id(trial: optuna.trial.FrozenTrial) -> int:
    """A stored trial's id in the storage. Public API missing: `FrozenTrial` hides it, and the
    storage methods that end a trial not live in this process take it."""
    return trial._trial_id


def queued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters a WAITING trial was queued with (`Study.enqueue_trial`). Public API
    missing: Optuna keeps them in the system attribute ``fixed_params``."""
    return dict(trial.system_attrs.get("fixed_params") or {})

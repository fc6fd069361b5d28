"""A study remembers the space that created it: a rerun with another space is refused before
anything is written, unless the user continues on purpose (then the change is recorded).

What is compared is `SearchSpace.fingerprint`: the base config, the searched distributions and
their conditions, the weights, the datasets and the objective. The sampler, the scheduler and
the run options may change between runs of one study.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import check_distribution_compatibility, json_to_distribution
from optuna.trial import TrialState

from mtl.errors import MtlError
from search.fidelity import label
from search.internals import frozen_trial_id, queued_params, storage_of
from search.space import SearchSpace
from search.warm_start import Source, seeds_of

log = logging.getLogger(__name__)

__all__ = ["StudyMismatch", "create_or_load", "differences"]


class StudyMismatch(MtlError):
    """The stored study was created by another space (or for other objectives)."""


def create_or_load(space: SearchSpace, storage: optuna.storages.BaseStorage, *, name: str, storage_url: str,
                   allow_change: bool, warm: Callable[[], Sequence[Source]] | None = None) -> optuna.Study:
    """The study named ``name``: created with the space's objectives and queued configs (the
    space's ``enqueue``, then the seeds ``warm`` reads from earlier studies), or loaded after
    checking that the same space created it.

    Raises:
        StudyMismatch: It optimises other objectives; or another space created it (the
            message lists the keys that differ) and ``allow_change`` is off, or the change
            mixes two distributions of one parameter, which Optuna cannot.
    """
    directions = [m.direction for m in space.metrics]
    names = [m.name for m in space.metrics]
    fingerprint = json.loads(json.dumps(space.fingerprint(), default=str))
    if name not in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
        sources = list(warm()) if warm is not None else []  # before anything is written: it may refuse
        study = optuna.create_study(storage=storage, study_name=name, directions=directions,
                                    sampler=space.make_sampler())
        for key, value in {"metrics": names, "aggregator": space.aggregator, "pairs": list(space.pairs),
                           "mode": space.mode, "space_file": str(space.source), "space_fingerprint": fingerprint,
                           "space_digest": space.fingerprint_digest(),
                           **({"train_samples": [label(x) for x in space.fidelity.sizes]} if space.fidelity else {}),
                           **({"race": dataclasses.asdict(space.race)} if space.race else {})}.items():
            study.set_user_attr(key, value)
        for values in space.enqueue:
            study.enqueue_trial(dict(values), user_attrs={"enqueued": True})
        for seed in seeds_of(sources):
            study.enqueue_trial(dict(seed.params), user_attrs={"enqueued": True, "warm_start": seed.origin})
        if sources:
            study.set_user_attr("warm_start", [{"study": s.study, "storage": s.storage, "seeds": len(s.seeds),
                                                "complete": s.complete, "outside": len(s.outside)} for s in sources])
        return study
    if space.warm_start is not None:
        log.warning("study %r exists: its queue was set when it was created; warm_start applies to a new study only",
                    name)
    study = optuna.load_study(study_name=name, storage=storage, sampler=space.make_sampler())
    stored = [d.name.lower() for d in study.directions]
    stored_names = study.user_attrs.get("metrics")
    if stored != directions or (stored_names is not None and stored_names != names):
        raise StudyMismatch(
            f"study {name!r} in {storage_url} optimises {stored_names or '?'} ({', '.join(stored)}), "
            f"but {space.source} asks for {names} ({', '.join(directions)}); use another --study name or --storage")
    old = study.user_attrs.get("space_fingerprint")
    if old is None:  # a study of an older version: from now on it is checked
        log.warning("study %r records no space (an older mtlsearch): recording %s's", name, space.source)
        study.set_user_attr("space_fingerprint", fingerprint)
        return study
    changed = differences(old, fingerprint)
    if not changed:
        return study
    listed = ", ".join(changed[:12]) + (f" and {len(changed) - 12} more" if len(changed) > 12 else "")
    was = study.user_attrs.get("space_file", "another space file")
    if not allow_change:
        raise StudyMismatch(
            f"study {name!r} in {storage_url} was created by another space ({was}); {space.source} differs in: "
            f"{listed}. Nothing was written. Pick a new --study for the edited space (its trials would mix with "
            f"the old ones in best.yaml and the report), or pass --allow-space-change to continue this study on "
            f"purpose (the change is recorded in it)")
    _check_mixable(old, fingerprint, name)
    _drop_queued_outside(study, space)
    history = list(study.user_attrs.get("space_changes") or [])
    history.append({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), "space_file": str(space.source), "keys": changed})
    study.set_user_attr("space_changes", history)
    study.set_user_attr("space_fingerprint", fingerprint)
    study.set_user_attr("space_digest", space.fingerprint_digest())
    log.warning("study %r continues with an edited space (%s); recorded in its space_changes", name, listed)
    return study


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """The dotted keys at which two fingerprints differ (a searched key as a whole: ``search.train.lr``)."""
    if isinstance(old, Mapping) and isinstance(new, Mapping) and path != "search.*":
        out = []
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in old or key not in new:
                out.append(sub)
            elif old[key] != new[key]:
                out += [sub] if path == "search" else differences(old[key], new[key], sub)
        return out
    return [] if old == new else [path or "(everything)"]


def _check_mixable(old: dict, new: dict, name: str) -> None:
    """Optuna refuses two distributions of one parameter of other kinds, or categorical choices changed."""
    for path, spec in (new.get("search") or {}).items():
        before = (old.get("search") or {}).get(path)
        if before is None:
            continue
        try:
            check_distribution_compatibility(json_to_distribution(json.dumps(before["distribution"])),
                                             json_to_distribution(json.dumps(spec["distribution"])))
        except ValueError as e:
            raise StudyMismatch(f"search.{path}: {e}; Optuna cannot continue study {name!r} with it: pick a "
                                f"new --study") from e


def _drop_queued_outside(study: optuna.Study, space: SearchSpace) -> None:
    """Queued configs (and retries) the edited space cannot sample are FAIL with the reason."""
    storage = storage_of(study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        outside = space.outside(queued_params(t))
        if outside:
            storage.set_trial_user_attr(frozen_trial_id(t), "fail_reason",
                                        f"dropped: queued with values outside the edited space: {outside}")
            storage.set_trial_state_values(frozen_trial_id(t), TrialState.FAIL)

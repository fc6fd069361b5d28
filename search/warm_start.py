"""Warm starts: a new study begins with the best configs of earlier studies.

A space's ``warm_start: {studies: [NAME | URL::NAME, ..], top: K}`` (or ``--warm-start``,
repeatable) names finished studies: a bare name is a study in the search's own storage,
``URL::NAME`` one in another. From each, the COMPLETE trials are ranked by that study's first
objective (its aggregate over its pairs, in its direction); those whose parameters this space
can sample (every name searched here, every value inside its distribution) are kept, and the
top K of them are enqueued in the new study, first after the space's own ``enqueue`` list.
Each such trial records where it came from in its ``warm_start`` user attribute (study,
storage, trial number, value there). Parameters this space searches and the earlier trial
did not set are sampled as usual.

The earlier trials are run again, not copied: their values were measured on other pairs, data
or a space before an edit, and would not be comparable. A warm start applies only when the
study is created; a resumed study already holds its queue.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtl.errors import SetupError

__all__ = ["Seed", "WarmStart", "read_seeds", "split_source"]

SEPARATOR = "::"


@dataclass(frozen=True)
class WarmStart:
    """A space's ``warm_start`` block."""

    studies: tuple[str, ...]
    """Earlier studies: a name in the search's storage, or ``URL::NAME``."""
    top: int = 4
    """Configs enqueued from each study: its best trials that fit this space."""
    flags: bool = False
    """The studies came from ``--warm-start`` (messages name the flag, not the file)."""


@dataclass(frozen=True)
class Seed:
    """One config to enqueue, and where it came from."""

    params: dict[str, Any]
    """Optuna parameters as the earlier trial set them."""
    origin: dict[str, Any]
    """``{study, storage, trial, value}``: recorded in the new trial's ``warm_start`` attribute."""


@dataclass(frozen=True)
class Source:
    """What one earlier study gives: the seeds, and how many trials it had and did not fit."""

    study: str
    storage: str
    seeds: tuple[Seed, ...]
    complete: int
    outside: tuple[str, ...]
    """Why trials were skipped: the first parameter of each that this space cannot sample."""

    def summary(self) -> str:
        """One line for the dry run and the search's start."""
        skipped = f"; {len(self.outside)} skipped, outside this space (e.g. {self.outside[0]})" if self.outside else ""
        return (f"{len(self.seeds)} configs from study {self.study!r} ({self.complete} complete trials"
                f"{skipped})")


def split_source(text: str, storage: str) -> tuple[str, str]:
    """``URL::NAME`` -> (URL, NAME); a bare ``NAME`` -> (``storage``, NAME)."""
    if SEPARATOR in text:
        url, _, name = text.rpartition(SEPARATOR)
        return url, name
    return storage, text


def read_seeds(space: Any, *, storage: str, study: str) -> list[Source]:
    """Read every warm-start study of the space: their best fitting configs, deduplicated
    (against each other and the space's own ``enqueue``).

    Args:
        space: The validated `search.space.SearchSpace` (its ``warm_start`` names the studies;
            not imported here: the space imports this module).
        storage: The search's own storage URL (where a bare name is looked up).
        study: The search's own study name (it cannot warm-start itself).

    Raises:
        SetupError: A storage or study that is not there (the message lists the studies
            there), the study itself, or a study without a COMPLETE trial.
    """
    from optuna.trial import TrialState

    from reports.extract import ReportError, open_study
    from reports.storage import hide_password

    if space.warm_start is None:
        return []
    seen = {_key(values) for values in space.enqueue}
    out = []
    for text in space.warm_start.studies:
        url, name = split_source(text, storage)
        where = f"--warm-start {text}" if space.warm_start.flags else f"{space.source}: warm_start: {text}"
        if not name:
            raise SetupError(f"{where}: no study name after '{SEPARATOR}'; expected URL::STUDY or STUDY")
        if (url, name) == (storage, study):
            raise SetupError(f"{where}: a study cannot warm-start itself; name an earlier study")
        try:
            earlier = open_study(url, name)
        except ReportError as e:  # its message starts with --storage URL, said already
            looked = f" (a bare name is looked up in the search's --storage {hide_password(url)})" if \
                SEPARATOR not in text else ""
            raise SetupError(f"{where}: {str(e).removeprefix(f'--storage {url}: ')}{looked}") from e
        sign = 1.0 if earlier.directions[0].name == "MAXIMIZE" else -1.0
        complete = [t for t in earlier.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                    if t.values and t.values[0] == t.values[0]]  # NaN ranks nowhere
        if not complete:
            raise SetupError(f"{where}: study {name!r} has no COMPLETE trial to start from")
        complete.sort(key=lambda t: -sign * t.values[0])
        seeds: list[Seed] = []
        outside: list[str] = []
        for t in complete:
            problems = space.outside_each(t.params)
            if problems:
                outside.append(f"trial {t.number}: {problems[0]}")
                continue
            if len(seeds) >= space.warm_start.top or _key(t.params) in seen:
                continue
            seen.add(_key(t.params))
            seeds.append(Seed(dict(t.params), {"study": name, "storage": hide_password(url), "trial": t.number,
                                               "value": t.values[0]}))
        out.append(Source(study=name, storage=hide_password(url), seeds=tuple(seeds), complete=len(complete),
                          outside=tuple(outside)))
    return out


def seeds_of(sources: Sequence[Source]) -> list[Seed]:
    """Every seed of the sources, in order."""
    return [seed for source in sources for seed in source.seeds]


def _key(params: Any) -> str:
    return json.dumps(dict(params), sort_keys=True, default=str)

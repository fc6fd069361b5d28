"""Training-data size as a fidelity: cheap trials on a slice, the survivors on more data.

``scheduler: {name: asha, reduction_factor: 2, train_samples: [500, 1000, 2000, all]}`` makes
each trial train once per rung, from scratch, with ``data.max_train_samples`` (per pair) set to
the rung's size (``all``: no limit), each rung in its own run directory
(``samples-500/``, ...). After each rung the trial reports its best checkpoint's scores with
``rung = reduction_factor ** k``; ASHA's milestones (grace period 1, ``max_t`` the last rung's
value) fall exactly on those values, so it compares trials at the same data size and stops
the bottom share at each (successive halving on data subsets: Klein et al. 2017, FABOLAS;
Li et al. 2018, Hyperband). Only the last rung's result is the trial's value: a trial ASHA
stopped is PRUNED, with the rung (``train_samples``) it reached recorded.

Each rung trains by epochs, so a rung on twice the data costs about twice the compute; a base
config that fixes ``train.max_steps`` would train every rung the same steps and is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DataFidelity", "read_fidelity", "rung_dir"]

OPTION = "train_samples"


@dataclass(frozen=True)
class DataFidelity:
    """The data-size rungs of a search."""

    sizes: tuple[int | None, ...]
    """Training segments per pair at each rung, increasing; None: all of them."""
    factor: float
    """ASHA's reduction factor: rung k reports ``rung = factor ** k``."""

    def rung(self, k: int) -> float:
        """The value rung ``k`` reports as ``rung`` (ASHA's time attribute)."""
        return float(self.factor ** k)

    def index(self, milestone: float) -> int:
        """The rung whose reported value is ASHA's ``milestone``."""
        return round(math.log(milestone) / math.log(self.factor))

    def scheduler_arguments(self) -> dict[str, Any]:
        """What ASHA is built with so that its milestones are the rungs."""
        return {"time_attr": "rung", "grace_period": 1, "max_t": self.rung(len(self.sizes) - 1)}

    def describe(self) -> str:
        return " -> ".join(label(s) for s in self.sizes) + " training segments per pair"


def label(size: int | None) -> str:
    return "all" if size is None else str(size)


def rung_dir(run_dir: str, size: int | None) -> str:
    """The run directory of one rung."""
    return f"{run_dir}/samples-{label(size)}"


def read_fidelity(args: dict[str, Any], *, supported: bool, scheduler: str, max_steps: int | None,
                  factor: float) -> tuple[DataFidelity | None, dict[str, Any], list[tuple[str, str]]]:
    """Take ``train_samples`` out of a scheduler's options.

    Args:
        args: The scheduler's options as written.
        supported: Whether the scheduler's row takes data-size rungs.
        scheduler: Its name (for messages).
        max_steps: ``base.train.max_steps`` (it must be unset).
        factor: The scheduler's reduction factor.

    Returns:
        ``(the fidelity or None, the other options, [(key, message)])``.
    """
    if OPTION not in args:
        return None, args, []
    rest = {k: v for k, v in args.items() if k != OPTION}
    key = f"scheduler.{OPTION}"
    raw = args[OPTION]
    problems = []
    if not supported:
        problems.append((key, f"scheduler {scheduler!r} takes no data-size rungs; use name: asha"))
    for derived in ("grace_period", "max_t", "brackets"):
        if derived in rest:
            problems.append((f"scheduler.{derived}", f"is set by {OPTION} (one rung per size); remove it"))
    if max_steps is not None:
        problems.append((key, f"base.train.max_steps is {max_steps}: every rung would train the same steps on "
                              f"more data; train by epochs (remove max_steps, set train.epochs) so a rung on "
                              f"more data trains longer"))
    sizes: list[int | None] = []
    if not isinstance(raw, list) or len(raw) < 2:
        problems.append((key, f"must list at least 2 increasing sizes (segments per pair), the last may be "
                              f"'all', e.g. [500, 1000, 2000, all]; got {raw!r}"))
    else:
        for i, v in enumerate(raw):
            if v == "all" and i == len(raw) - 1:
                sizes.append(None)
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                problems.append((f"{key}[{i}]", f"must be an integer >= 1{' or all' if i == len(raw) - 1 else ''}"
                                                f", got {v!r}"))
            elif sizes and sizes[-1] is not None and v <= sizes[-1]:
                problems.append((f"{key}[{i}]", f"must be larger than the rung before ({sizes[-1]}), got {v}"))
            else:
                sizes.append(v)
    if problems:
        return None, rest, problems
    return DataFidelity(sizes=tuple(sizes), factor=factor), rest, []


def with_size(configs: Mapping[str, dict[str, Any]], size: int | None) -> dict[str, dict[str, Any]]:
    """Trainer configs (as dicts) with ``data.max_train_samples`` set to a rung's size."""
    return {key: {**cfg, "data": {**cfg["data"], "max_train_samples": size}} for key, cfg in configs.items()}

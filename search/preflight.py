"""What a search needs besides a valid space, checked before anything is written or started
(and by `--dry-run`): what every trial would reject (data, checkpoint, device), a writable
output folder, and resources a trial can get. Light: no torch, no ray."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from optuna.distributions import CategoricalDistribution

from mtl.preflight import run_problems
from search.cluster import check_reachable, local_resources, resource_problem
from search.space import SearchSpace

__all__ = ["search_problems"]

_SPACE_KEYS = {"data.pairs": "datasets.pairs", "data.root": "run.data (--data)",
               "model.pretrained": "base.model.pretrained (--backbone-path)"}
"""Where a space (or the command line) sets what a trial's config key holds."""


def search_problems(space: SearchSpace, *, address: str | None) -> list[str]:
    """Every reason the search would fail every trial, or never start one; each a line
    ``where: what, expected what``. Reaching ``address`` waits a few seconds at most."""
    run = space.run
    lines: list[str] = []
    cfg = space.trial_config({}, data_root=run.data)
    for problem in run_problems(cfg):
        lines.append(f"{space.source}: {_SPACE_KEYS.get(problem.path.split('[')[0], problem.path)}"
                     f"{problem.path[len(problem.path.split('[')[0]):]}: {problem.message}")
    for param in space.params:  # every pretrained checkpoint the search may pick
        if param.path == "model.pretrained" and isinstance(param.distribution, CategoricalDistribution):
            for choice in param.distribution.choices:
                if choice is None:
                    continue
                probe = space.trial_config({"model.pretrained": choice}, data_root=run.data)
                lines += [f"{space.source}: search.model.pretrained: {p.message}" for p in run_problems(probe)
                          if p.path == "model.pretrained"]
    if cfg.train.device == "cuda" and not run.gpus_per_trial:
        lines.append(f"{space.source}: base.train.device: cuda, but --gpus-per-trial is 0: Ray gives a trial no GPU; "
                     f"ask for one (--gpus-per-trial 1, or a fraction) or set train.device: auto")
    lines += _out_problems(Path(str(run.out)))
    if address is None:
        short = resource_problem(cpus=run.cpus_per_trial, gpus=run.gpus_per_trial, totals=local_resources(),
                                 where="this machine (a Ray of the search's own)")
        if short is not None:
            lines.append(short)
    else:
        from mtl.errors import SetupError

        try:
            check_reachable(address)
        except SetupError as e:
            lines.append(str(e))
    return lines


def _out_problems(out: Path) -> list[str]:
    """The trials' folder must be a folder we can write (it is made if missing)."""
    where = f"--out {out}"
    existing = next((p for p in [out, *out.parents] if p.exists()), None)
    if existing is None:
        return []
    if not existing.is_dir():
        return [f"{where}: {existing} is a file, expected the folder of the trials' run directories"]
    if not os.access(existing, os.W_OK | os.X_OK):
        return [f"{where}: {existing} is not writable here"]
    try:  # access() says yes to root on a read-only mount: write and remove a file to be sure
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return [f"{where}: cannot write in {existing}: {e.strerror}"]
    return []

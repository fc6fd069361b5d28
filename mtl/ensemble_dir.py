"""Write an ensemble folder from trained run directories: weights chosen on dev, the ensemble's
dev metrics beside each member's, its dev predictions in the WMT20 layout.

`search.finalizing` calls :func:`build_ensemble` once its members have trained; the folder then
loads with `mtl.ensemble.load_run` (`mtl evaluate --run`, `mtl predict --run`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtl.device import pick_device
from mtl.ensemble import Ensemble, choose_weights, load_run, write_ensemble
from mtl.errors import SetupError
from mtl.evaluate import objective, write_predictions
from mtl.files import finite
from mtl.predict import dev_outputs, ensemble_scores
from mtl.rundir import RunDir

__all__ = ["build_ensemble"]

log = logging.getLogger(__name__)


def build_ensemble(member_dirs: Sequence[str | Path], out: str | Path, *, split: str = "dev",
                   root: str | None = None, device: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Ensemble trained runs (best-ranked first) into the folder ``out``.

    Each dataset of the first member's ``data.pairs`` is predicted by every member on its whole
    ``split``; the weights are chosen as `mtl.ensemble.choose_weights` says; the folder gets
    ``ensemble.json``, ``metrics.json`` and ``predictions/<pair>.<split>/``.

    Returns:
        What ``metrics.json`` holds: the ensemble's objective and metrics, each member's
        objective and metrics on the same rows, and the weights' choice per task.

    Raises:
        CheckpointError: A member folder that does not load.
        SetupError: The runs were trained on different datasets.
    """
    members = [load_run(d).members[0] for d in member_dirs]
    names = [RunDir(d).path.name for d in member_dirs]
    pairs_of = {str(d): sorted(m.cfg.data.pairs) for d, m in zip(member_dirs, members)}
    if len({tuple(p) for p in pairs_of.values()}) > 1:
        raise SetupError("the runs of an ensemble must be trained on the same datasets; "
                         + "; ".join(f"{d}: {', '.join(p)}" for d, p in pairs_of.items()))
    ens = Ensemble.of(members)
    where = pick_device(device or ens.cfg.train.device)
    ens.to(where)
    pairs = list(ens.cfg.data.pairs)
    dev = [dev_outputs(ens, pair, split, max_samples=None, root=root, device=where) for pair in pairs]
    choice = choose_weights(ens, dev, seed=seed) if len(members) > 1 else {}
    terms = ens.cfg.objective_terms()
    metrics: dict[str, Any] = {}
    singles: dict[str, dict[str, Any]] = {name: {} for name in names}
    for pair, (data, rows) in zip(pairs, dev):
        combined = ens.combine(rows)
        metrics[pair] = ensemble_scores(ens, data, combined)
        for name, member, own in zip(names, members, rows):
            singles[name][pair] = ensemble_scores(Ensemble.of([member]), data, own)
        write_predictions(data, {t: h.from_outputs(combined) for t, h in ens.heads.items()},
                          RunDir(out).predictions(pair, split), ens.heads, method="ensemble")
    result = {"split": split, "objective": objective(metrics, terms), "metrics": metrics,
              "members": {name: {"objective": objective(m, terms), "metrics": m} for name, m in singles.items()},
              "weights": ens.weights, "choice": choice}
    write_ensemble(out, ens, member_dirs, choice=choice, metrics=finite(result))
    log.info("ensemble of %d written to %s: objective %.4f", len(members), out, result["objective"])
    return result


"""The whole report: extract, aggregate, resample, ensemble, the floor, then render (imported last)."""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import asdict
from pathlib import Path

import optuna

from mtl.files import write_text
from reports.aggregate import aggregate
from reports.bootstrap import uncertainty
from reports.ensemble import Ensemble, ensemble
from reports.extract import ReportError, StudyData, extract
from reports.finalized import finalized
from reports.floor import floor

log = logging.getLogger(__name__)

__all__ = ["build_report", "write_table"]


def build_report(study: optuna.Study, *, out: str | Path, top: int = 3, n_boot: int = 1000, seed: int = 0,
                 data_root: str | None = None) -> Path:
    """Write ``index.html`` (every figure, plotly.js embedded once) and ``metrics.csv`` (the
    tidy table) into ``out``.

    Args:
        study: A study written by ``search``.
        out: The report folder (created).
        top: How many of the best configs get intervals and make the ensemble.
        n_boot: Bootstrap resamples.
        seed: Resampling seed.
        data_root: MLQE-PE root for the gold labels and the zero-training floor (default: the
            trials' ``data.root``).

    Returns:
        The path of ``index.html``.

    Raises:
        ImportError: plotly is not installed (the message says how to install it).
    """
    from reports.render import ReportData, render  # imports plotly: fails first, before any work

    data = extract(study)
    agg = aggregate(data)
    unc = uncertainty(data, agg, top=top, n=n_boot, seed=seed, data_root=data_root)
    ens: Ensemble | None = None
    notes = {}
    try:
        ens = ensemble(data, agg, top=max(2, top), data_root=data_root)
    except ReportError as e:
        notes["ensemble"] = str(e)
    flr = floor(data, agg, data_root=data_root)
    final = finalized(study, data_root=data_root, n_boot=n_boot, seed=seed)
    front = [t.number for t in study.best_trials] if len(data.directions) > 1 and data.complete else []
    out = Path(out)
    write_table(data, out / "metrics.csv")
    report = ReportData(data=data, agg=agg, unc=unc, ens=ens, front=front, notes=notes, floor=flr, final=final)
    path = render(report, out / "index.html")
    log.info("report: %s", path)
    return path


def write_table(data: StudyData, path: str | Path) -> Path:
    """Write the tidy table (one row per trial, pair, task and metric) as CSV."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["trial", "state", "pair", "task", "metric", "value", "step", "seconds", "params", "weights"])
    for r in data.rows:
        row = asdict(r)
        w.writerow([row["trial"], row["state"], row["pair"], row["task"], row["metric"], row["value"],
                    row["step"], row["seconds"], dict(r.params), dict(r.weights)])
    write_text(path, f.getvalue())
    return path

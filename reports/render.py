"""Draw: one self-contained HTML page that embeds plotly.js once and every figure as JSON.

Each figure sits in ``<script type="application/json" class="figure" data-target=ID>``; a
ten-line loader hands them to ``Plotly.newPlot``. The page opens offline (no CDN).
"""

from __future__ import annotations

import html
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl.files import write_text
from reports import figures as F
from reports.aggregate import Aggregation
from reports.bootstrap import Uncertainty, verdict
from reports.ensemble import Ensemble, summary
from reports.extract import StudyData
from reports.finalized import Finalized
from reports.floor import LABEL as FLOOR_LABEL
from reports.floor import Floor
from reports.floor import verdict as floor_verdict

__all__ = ["SECTIONS", "ReportData", "render"]


@dataclass(frozen=True)
class ReportData:
    """Everything the page shows, computed before drawing."""

    data: StudyData
    agg: Aggregation
    unc: Uncertainty
    ens: Ensemble | None
    front: list[int] = field(default_factory=list)
    """Trials on the Pareto front (multi-objective studies)."""
    notes: dict[str, str] = field(default_factory=dict)
    """Section id -> why it is empty, when the data says more than the figure function."""
    floor: Floor | None = None
    """The zero-training DA floor per pair (None: the study trains no da)."""
    final: Finalized | None = None
    """The study's latest finalize run (None: it was never finalized)."""


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    caption: str
    draw: Callable[[ReportData], Any]
    empty: str
    when: Callable[[ReportData], bool] | None = None
    """Whether the section is on the page at all (None: always)."""


SECTIONS: list[Section] = [
    Section("history", "Optimization history", "The objective of each complete trial, and the best so far.",
            lambda r: F.history(r.data), "no complete trial"),
    Section("importances", "Parameter importances", "Optuna's fANOVA evaluator: the share of the objective's "
            "variance each searched parameter explains.", lambda r: F.importances(r.data), "not computed"),
    Section("parallel", "Parallel coordinates", "Each line a complete trial; drag on an axis to filter. Parameters "
            "that only some trials set (e.g. the weights of fixed weighting) are drawn under Loss weights.",
            lambda r: F.parallel(r.data), "fewer than 2 complete trials with searched parameters"),
    Section("heatmap", "Per pair × top config", "The dev metric of the best configs on each pair, best first.",
            lambda r: F.heatmap(r.data, r.agg, flr=r.floor), "no config scored on every pair"),
    Section("floor", "Against the zero-training floor", "Each complete config's DA Pearson per pair (the best "
            f"starred) beside the floor (dashed): {FLOOR_LABEL}, the NMT system's own sentence score against DA "
            "z_mean, on the segments the trials were scored on.", lambda r: F.floor(r.floor, best=_best(r)),
            "no complete config with a DA Pearson", when=lambda r: r.floor is not None),
    Section("simplex", "Loss weights", "The task loss weights in force (shares of their sum), coloured by the "
            "objective: circles fixed weights, diamonds the weights a learned strategy ended with (trials "
            "with the same weights overlap: hover to see them).",
            lambda r: F.simplex(r.data), "fewer than two tasks"),
    Section("strategies", "Fixed weights vs learned strategies", "The objective by weighting strategy "
            "(number of complete trials in brackets).", lambda r: F.strategies(r.data), "no complete trial"),
    Section("curves", "Learning curves", "The objective at each evaluation; dotted: trials that did not "
            "complete, X: where the scheduler stopped one.", lambda r: F.curves(r.data), "no evaluation recorded"),
    Section("cost", "Quality against compute", "Each complete trial's objective against the seconds it "
            "trained (hover: steps and training segments per pair); the line joins the configs no other beats "
            "on both, the cheapest for their quality.", lambda r: F.cost(r.data), "no complete trial with its seconds"),
    Section("pareto", "Pareto front", "The first two objectives; the front joined by a line.",
            lambda r: F.pareto(r.data, r.front), "a single-objective study has no Pareto front"),
    Section("intervals", "Bootstrap intervals", "Dev metric of the top configs with percentile intervals "
            "(resampled segments).", lambda r: F.intervals(r.unc, r.floor), "no predictions to resample"),
    Section("agreement", "Do the aggregators agree?", "Kendall τ between the per-config scores of each pair "
            "of aggregators (1: the same ranking; blank: a method that ties every config).",
            lambda r: F.agreement(r.agg), "fewer than 2 ranked configs"),
    Section("ensemble", "Ensemble of the top configs", "Pearson of each member and of their averaged "
            "predictions.", lambda r: F.ensemble(r.ens, r.floor), "no ensemble"),
]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:0 auto;padding:16px 24px;
color:#222;line-height:1.45}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.25em;margin:1.6em 0 .2em;border-bottom:1px solid #ddd}
.caption{color:#555;margin:.2em 0 .6em}.empty{color:#888;font-style:italic}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.verdict{background:#f6f8fa;border-left:4px solid #4a7;padding:8px 12px}.verdict.below{border-left-color:crimson}
.fig{width:100%}
nav a{margin-right:.8em;font-size:.9em}code{background:#f4f4f4;padding:0 3px}
"""

_LOADER = """
for (const s of document.querySelectorAll('script.figure')) {
  const target = document.getElementById(s.dataset.target);
  try { const f = JSON.parse(s.textContent);
        Plotly.newPlot(target, f.data, f.layout, {responsive: true, displaylogo: false}); }
  catch (e) { target.textContent = 'figure failed: ' + e; console.error(e); }
}
"""


def render(report: ReportData, out: str | Path) -> Path:
    """Write the report page.

    Args:
        report: The computed data.
        out: The HTML file to write (its folder is created).

    Returns:
        The path written.
    """
    from plotly.offline import get_plotlyjs

    d = report.data
    sections = [s for s in SECTIONS if s.when is None or s.when(report)]
    body = [_header(report)]
    extra = [("final", "Final models")] if report.final is not None else []
    body.append("<nav>" + " ".join(f'<a href="#{id_}">{title}</a>' for id_, title in
                                   [*((s.id, s.title) for s in sections), *extra]) + "</nav>")
    scripts = []
    for s in sections:
        fig = s.draw(report)
        body.append(f'<h2 id="{s.id}">{html.escape(s.title)}</h2><p class="caption">{html.escape(s.caption)}</p>')
        if s.id == "floor":
            body.append(_floor_table(report))
        if s.id == "intervals":
            body.append(_top_table(report))
        if s.id == "ensemble" and report.ens is not None:
            body.append("".join(f"<p>{html.escape(line)}</p>" for line in summary(report.ens)))
        if fig is None:
            why = report.notes.get(s.id) or (d.importance_note if s.id == "importances" else None) or s.empty
            body.append(f'<p class="empty">Nothing to draw: {html.escape(why)}.</p>')
            continue
        body.append(f'<div class="fig" id="fig-{s.id}"></div>')
        blob = fig.to_json().replace("</", "<\\/")
        scripts.append(f'<script type="application/json" class="figure" data-target="fig-{s.id}">{blob}</script>')
    if report.final is not None:
        body.append('<h2 id="final">Final models</h2>' + _final_section(report.final))
    body.append('<h2 id="rankings">Rankings by aggregator</h2>' + _rankings_table(report.agg))
    body.append('<h2 id="failed">Failed trials</h2>' + _failed_table(d))
    title = html.escape(f"Study {d.name}: model selection report")
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style>'
            f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
            + "\n".join(body) + "\n" + "\n".join(scripts) + f"<script>{_LOADER}</script></body></html>")
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, page)  # whole or not at all: several drivers of one study may write it at once
    return path


def _fmt(v: float | None, digits: int = 4) -> str:
    """A value; a dash when absent, "undefined" when NaN (the metrics' convention, `mtl.metrics`)."""
    if v is None:
        return "–"
    return "undefined" if isinstance(v, float) and math.isnan(v) else f"{v:.{digits}f}"


def _best(r: ReportData) -> int | None:
    order = r.agg.rankings.get(r.data.aggregator) or r.agg.rankings.get("mean") or []
    return order[0] if order else None


def _header(r: ReportData) -> str:
    d, agg = r.data, r.agg
    states: dict[str, int] = {}
    for t in d.trials:
        key = "interrupted" if t.interrupted else t.state.lower()
        states[key] = states.get(key, 0) + 1
    seconds = sum(t.seconds or 0 for t in d.trials)
    objectives = ", ".join(f"{n} ({dr})" for n, dr in zip(d.metric_names, d.directions))
    parts = [f"<h1>Study {html.escape(d.name)}</h1>",
             f"<p>{len(d.trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items()))
             + f"; {seconds / 60:.1f} trial-minutes. Objective {html.escape(objectives)}, {html.escape(d.aggregator)} "
             f"over {html.escape(', '.join(d.pairs))} ({html.escape(d.mode)})"
             + (f"; space <code>{html.escape(d.space_file)}</code>" if d.space_file else "") + ".</p>"]
    order = agg.rankings.get(d.aggregator) or agg.rankings.get("mean") or []
    if not order:
        return "".join(parts) + '<p class="empty">No complete trial scored on every pair: no best config.</p>'
    best = d.trial(order[0])
    params = ", ".join(f"<code>{html.escape(k)}={html.escape(_short(v))}</code>" for k, v in best.params.items())
    parts.append(f"<p><b>Best config: trial {best.number}</b> (by {html.escape(d.aggregator)}, "
                 f"{html.escape(d.metric_names[0])} = {_fmt(best.values[0] if best.values else None)}; "
                 f"weighting {html.escape(best.weighting)}): {params or 'the base config'}.</p>")
    parts.append("<table><tr><th>pair</th>" + "".join(f"<th>{html.escape(p)}</th>" for p in d.pairs) + "</tr>"
                 f"<tr><td>{html.escape(agg.metric)}</td>"
                 + "".join(f'<td class="num">{_fmt(agg.scores[best.number].get(p))}</td>' for p in d.pairs)
                 + "</tr>" + _header_floor_rows(r, best.number) + "</table>")
    if r.floor is not None:
        below = "" if r.floor.clears(best.number) else " below"
        parts.append(f'<p class="verdict{below}">{html.escape(floor_verdict(r.floor, best.number))}</p>')
    parts.append('<div class="verdict">' + "".join(f"<p>{html.escape(s)}</p>"
                                                   for s in verdict(r.unc, method=d.aggregator)) + "</div>")
    return "".join(parts)


def _header_floor_rows(r: ReportData, best: int) -> str:
    flr = r.floor
    if flr is None:
        return ""
    rows = [] if r.agg.metric == "da.pearson" else [("da.pearson", flr.da.get(best, {}))]
    rows.append((f"floor: {FLOOR_LABEL}", flr.values))
    rows.append(("DA Pearson − floor", flr.margins(best)))
    return "".join(f"<tr><td>{html.escape(name)}</td>"
                   + "".join(f'<td class="num">{_fmt(values.get(p))}</td>' for p in r.data.pairs) + "</tr>"
                   for name, values in rows)


def _vs_floor(flr: Floor, trial: int) -> str:
    """Whether a config's DA Pearson clears the floor, and its margin on its worst pair."""
    worst = flr.worst(trial)
    if worst is None:
        return "–"
    n = len(flr.cleared(trial))
    where = "yes, every pair" if flr.clears(trial) else f"no: {n} of {len(flr.pairs)} pairs"
    return f"{where}; worst {_signed(worst[1])} ({worst[0]})"


def _floor_table(r: ReportData) -> str:
    flr = r.floor
    if flr is None:
        return ""
    notes = "".join(f'<p class="empty">{html.escape(n)}</p>' for n in flr.notes)
    if not flr.values:
        return notes
    order = [t for t in (r.agg.rankings.get(r.data.aggregator) or r.agg.rankings.get("mean") or []) if t in flr.da]
    done = [t for t, da in flr.da.items() if da]
    head = (f"<p>{sum(flr.clears(t) for t in done)} of {len(done)} complete configs clear the floor on every pair. "
            f"DA Pearson on {html.escape(flr.rows)} (as trial {flr.source}'s config names them; the floor is "
            f"computed on the same rows) and its margin over the floor, for the top configs by "
            f"{html.escape(r.data.aggregator)}:</p>")
    floor_row = (f"<tr><td></td><td>{html.escape(FLOOR_LABEL)}</td>"
                 + "".join(f'<td class="num">{_fmt(flr.values.get(p), 3)}</td>' for p in flr.pairs) + "<td></td></tr>")
    rows = "".join(f"<tr><td>{i + 1}</td><td>{t}</td>{_margin_cells(flr, t)}<td>{html.escape(_vs_floor(flr, t))}"
                   "</td></tr>" for i, t in enumerate(order[:10]))
    return (head + "<table><tr><th>rank</th><th>trial</th>"
            + "".join(f"<th>{html.escape(p)} DA Pearson (− floor)</th>" for p in flr.pairs)
            + f"<th>above the floor on every pair?</th></tr>{floor_row}{rows}</table>{notes}")


def _margin_cells(flr: Floor, trial: int) -> str:
    da, margins = flr.da[trial], flr.margins(trial)
    return "".join(f'<td class="num">{_fmt(da.get(p), 3)} ({_signed(margins.get(p))})</td>' for p in flr.pairs)


def _signed(v: float | None) -> str:
    return "–" if v is None or math.isnan(v) else f"{v:+.3f}"


def _short(v: object) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _top_table(r: ReportData) -> str:
    unc = r.unc
    if not unc.intervals:
        return f'<p class="empty">No intervals: {html.escape("; ".join(unc.notes) or "nothing to resample")}.</p>'
    pairs = list(unc.intervals)
    trials = list(unc.intervals[pairs[0]])
    flr = r.floor
    rows = "".join(
        f"<tr><td>{i + 1}</td><td>{t}</td><td>{html.escape(r.data.trial(t).weighting)}</td>"
        + "".join(f'<td class="num">{_fmt(unc.intervals[p][t][0])} [{_fmt(unc.intervals[p][t][1], 3)}, '
                  f'{_fmt(unc.intervals[p][t][2], 3)}]</td>' for p in pairs)
        + (f"<td>{html.escape(_vs_floor(flr, t))}</td>" if flr is not None else "") + "</tr>"
        for i, t in enumerate(trials))
    if flr is not None and flr.values and unc.metric == "da.pearson":
        rows += (f"<tr><td></td><td colspan=2>{html.escape(FLOOR_LABEL)}</td>"
                 + "".join(f'<td class="num">{_fmt(flr.values.get(p))}</td>' for p in pairs) + "<td></td></tr>")
    notes = "".join(f'<p class="empty">{html.escape(n)}</p>' for n in unc.notes)
    return ("<table><tr><th>rank</th><th>trial</th><th>weighting</th>"
            + "".join(f"<th>{html.escape(p)} dev {html.escape(unc.metric)} ({unc.segments[p]} seg.)</th>"
                      for p in pairs)
            + ("<th>DA Pearson above the floor? (worst margin)</th>" if flr is not None else "")
            + f"</tr>{rows}</table>{notes}")


def _final_section(f: Finalized) -> str:
    """The finalized configs' members (mean ± spread over seeds) and the ensemble, per pair and
    primary metric, all on the same dev segments; then the comparisons in words."""
    e = html.escape
    parts = [f'<p class="caption">{e(f.out)}: the top configs retrained on all the training data with several '
             f"seeds (search.finalize), scored on all of dev; the ensemble ({e(f.ensemble)}) averages them. "
             f"Ensemble objective {_fmt(f.objective)}.</p>"]
    keys = [(pair, key) for pair, values in f.ens_metrics.items() for key in values]
    head = "".join(f"<th>{e(pair)}<br>{e(key)}</th>" for pair, key in keys)
    rows = []
    for c in f.configs:
        cells = []
        for pair, key in keys:
            values = [v for v in c["metrics"].get(pair, {}).get(key, []) if v is not None]
            spread = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
            cells.append(f'<td class="num">{_fmt(statistics.mean(values)) if values else "–"}{spread}</td>')
        objectives = [v for v in c["objectives"] if v is not None]
        rows.append(f"<tr><td>{c['rank']}</td><td>{c['trial']}</td><td class=\"num\">{_fmt(c['search'])}</td>"
                    f"<td class=\"num\">{_fmt(statistics.mean(objectives)) if objectives else '–'}</td>"
                    f"<td>{', '.join(map(str, c['seeds']))}</td>{''.join(cells)}</tr>")
    ens = "".join(f'<td class="num">{_fmt(f.ens_metrics[pair][key])}</td>' for pair, key in keys)
    rows.append(f"<tr><td colspan=\"3\"><b>ensemble</b></td><td class=\"num\">{_fmt(f.objective)}</td>"
                f"<td></td>{ens}</tr>")
    parts.append("<table><tr><th>rank</th><th>trial</th><th>search score</th><th>finalized objective</th>"
                 f"<th>seeds</th>{head}</tr>{''.join(rows)}</table>")
    if f.rank_correlation is not None:
        parts.append(f"<p>Spearman's rho between the configs' search scores and their finalized objectives: "
                     f"{f.rank_correlation:.2f} (1: finalizing kept the search's ranking).</p>")
    parts += [f"<p>{e(line)}</p>" for line in f.verdicts + f.notes]
    return "".join(parts)


def _rankings_table(agg: Aggregation, top: int = 10) -> str:
    if not agg.rankings or not agg.scores:
        return '<p class="empty">No config scored on every pair.</p>'
    methods = list(agg.rankings)
    rows = "".join(
        f"<tr><td>{i + 1}</td>" + "".join(
            f'<td>{agg.rankings[m][i]} ({_fmt(agg.by_method[m][agg.rankings[m][i]], 3)})</td>'
            if i < len(agg.rankings[m]) else "<td></td>" for m in methods) + "</tr>"
        for i in range(min(top, len(agg.scores))))
    missing = "".join(f"<p>Trial {t} is not ranked: no finite {html.escape(agg.metric)} on "
                      f"{html.escape(', '.join(ps))}.</p>" for t, ps in agg.incomplete.items())
    return (f'<p class="caption">Trial (score) at each place, by {html.escape(agg.metric)} '
            f"({agg.direction}); Borda counts configs beaten per pair.</p><table><tr><th>place</th>"
            + "".join(f"<th>{html.escape(m)}</th>" for m in methods) + f"</tr>{rows}</table>{missing}")


def _failed_table(d: StudyData) -> str:
    failed = [t for t in d.trials if t.state == "FAIL"]
    if not failed:
        return "<p>None.</p>"
    rows = "".join(f"<tr><td>{t.number}</td><td>{'interrupted' if t.interrupted else 'failed'}</td>"
                   f"<td>{html.escape((t.fail_reason or 'no reason recorded')[:400])}</td></tr>" for t in failed)
    return f"<table><tr><th>trial</th><th>state</th><th>reason</th></tr>{rows}</table>"

"""One small function per figure, each over extracted data, each returning a Plotly figure
(or None when the study has nothing to draw for it: the page then says why)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mtl.errors import SetupError
from mtl.weighting import WEIGHTINGS

try:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots
except ImportError as e:  # an optional dependency: say how to get it
    raise SetupError("the report needs plotly, a dependency of mtlsearch that is missing here: reinstall "
                     "mtlsearch (pip install -e .) or pip install plotly") from e

from reports.aggregate import Aggregation
from reports.bootstrap import Uncertainty
from reports.ensemble import Ensemble
from reports.extract import StudyData, TrialData
from reports.floor import FLOOR_TASK, Floor
from reports.floor import LABEL as FLOOR_LABEL

COLORS = "Viridis"
_LAYOUT = dict(template="plotly_white", height=420, margin=dict(l=60, r=30, t=40, b=50), font=dict(size=13))


def _fig(**layout) -> go.Figure:
    return go.Figure(layout={**_LAYOUT, **layout})


def _objective(data: StudyData) -> str:
    return f"{data.metric_names[0]} ({data.aggregator} over pairs)"


def _value(t: TrialData) -> float:
    return t.values[0] if t.values else math.nan


def _pair_axis(pairs: Sequence[str]) -> dict:
    """A category x axis in the pairs' order (a shape then sits at category index i)."""
    return dict(title="pair", type="category", categoryorder="array", categoryarray=list(pairs))


def _floor_lines(fig: go.Figure, pairs: Sequence[str], flr: Floor | None) -> None:
    """The floor of each pair as a dashed line across its category, labelled with its value."""
    first = True
    for i, pair in enumerate(pairs):
        v = flr.values.get(pair, math.nan) if flr is not None else math.nan
        if not math.isfinite(v):
            continue
        fig.add_shape(type="line", x0=i - 0.42, x1=i + 0.42, y0=v, y1=v, name=FLOOR_LABEL, legendgroup="floor",
                      showlegend=first, line=dict(dash="dash", color="#333", width=2),
                      label=dict(text=f"{v:.3f}", textposition="end", font=dict(size=11)))
        first = False


def history(data: StudyData) -> go.Figure | None:
    """Each complete trial's objective in trial order, and the best so far."""
    done = data.complete
    if not done:
        return None
    better = max if data.directions[0] == "maximize" else min
    best, run = [], None
    for t in done:
        run = _value(t) if run is None else better(run, _value(t))
        best.append(run)
    fig = _fig(xaxis_title="trial", yaxis_title=_objective(data))
    fig.add_scatter(x=[t.number for t in done], y=[_value(t) for t in done], mode="markers", name="trial",
                    text=[t.weighting for t in done], hovertemplate="trial %{x}: %{y:.4f} (%{text})<extra></extra>")
    fig.add_scatter(x=[t.number for t in done], y=best, mode="lines", line_shape="hv", name="best so far")
    return fig


def importances(data: StudyData) -> go.Figure | None:
    """Optuna's fANOVA importance of each searched parameter, per objective."""
    if not data.importances:
        return None
    fig = _fig(xaxis_title="importance (share of the objective's variance)", barmode="group",
               height=max(260, 60 + 40 * max(len(v) for v in data.importances.values())))
    for name, imp in data.importances.items():
        keys = sorted(imp, key=lambda k: imp[k])
        fig.add_bar(x=[imp[k] for k in keys], y=keys, orientation="h", name=name)
    return fig


def parallel(data: StudyData) -> go.Figure | None:
    """Parallel coordinates: the parameters every complete trial sets, and the objective, coloured by it."""
    done = [t for t in data.complete if t.params]
    keys = sorted({k for t in done for k in t.params if all(k in u.params for u in done)})  # conditional ones: no axis
    if len(done) < 2 or not keys:
        return None
    dims = []
    for k in keys:
        vals = [t.params[k] for t in done]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            log = min(vals) > 0 and max(vals) / min(vals) > 20
            dims.append(dict(label=f"log10 {k}" if log else k, values=[math.log10(v) if log else v for v in vals]))
        else:
            cats = sorted({str(v) for v in vals})
            dims.append(dict(label=k, values=[cats.index(str(v)) for v in vals], tickvals=list(range(len(cats))),
                             ticktext=cats))
    values = [_value(t) for t in done]
    dims.append(dict(label=data.metric_names[0], values=values))
    fig = _fig(margin=dict(l=80, r=80, t=60, b=30))
    fig.add_trace(go.Parcoords(dimensions=dims, line=dict(color=values, colorscale=COLORS, showscale=True)))
    return fig


def heatmap(data: StudyData, agg: Aggregation, *, top: int = 10, flr: Floor | None = None) -> go.Figure | None:
    """Per pair x top config: the metric the ranking is made of; when it is the DA Pearson, the
    floor as a last row."""
    order = agg.rankings.get(data.aggregator) or agg.rankings.get("mean") or []
    order = order[:top]
    if not order:
        return None
    pairs = data.pairs
    z = [[agg.scores[t][p] for p in pairs] for t in order]
    labels = [f"#{i + 1} trial {t}" for i, t in enumerate(order)]
    if flr is not None and flr.values and agg.metric == "da.pearson":
        z.append([flr.values.get(p, math.nan) for p in pairs])
        labels.append(FLOOR_LABEL)
    fig = _fig(height=max(260, 80 + 34 * len(order)), xaxis_title="pair", yaxis_autorange="reversed")
    fig.add_trace(go.Heatmap(z=z, x=pairs, y=labels, colorscale=COLORS, text=[[_fmt3(v) for v in r] for r in z],
                             texttemplate="%{text}", colorbar=dict(title=agg.metric)))
    return fig


def _fmt3(v: float) -> str:
    return "" if math.isnan(v) else f"{v:.3f}"


def floor(flr: Floor | None, *, best: int | None = None) -> go.Figure | None:
    """Every complete config's DA Pearson per pair beside the floor (dashed), the best config starred."""
    if flr is None or not any(flr.da.values()):
        return None
    groups: dict[str, list[tuple[str, float, int]]] = {"above the floor": [], "not above the floor": [],
                                                       "config (no floor)": []}
    for t, scores in flr.da.items():
        margins = flr.margins(t)
        for pair, v in scores.items():
            key = "config (no floor)" if pair not in margins else \
                "above the floor" if margins[pair] > 0 else "not above the floor"
            groups[key].append((pair, v, t))
    colors = {"above the floor": "#4a7", "not above the floor": "crimson", "config (no floor)": "#7a9cc6"}
    fig = _fig(xaxis=_pair_axis(flr.pairs), yaxis_title=f"DA Pearson on {flr.rows}")
    for name, points in groups.items():
        if points:
            fig.add_scatter(x=[p for p, _, _ in points], y=[v for _, v, _ in points], mode="markers", name=name,
                            marker=dict(color=colors[name], size=8, opacity=0.7),
                            text=[f"trial {t}" for _, _, t in points], hovertemplate="%{text}: %{y:.3f}<extra></extra>")
    if best is not None and flr.da.get(best):
        mine = flr.da[best]
        fig.add_scatter(x=list(mine), y=list(mine.values()), mode="markers", name=f"best config (trial {best})",
                        marker=dict(symbol="star", size=15, color="black"))
    _floor_lines(fig, flr.pairs, flr)
    return fig


def _given(weighting: str) -> bool:
    """Whether a strategy trains with the given task weights (its row says), rather than learning them."""
    row = WEIGHTINGS.get(weighting)
    return row is not None and row.reads_task_weights


def simplex(data: StudyData) -> go.Figure | None:
    """Task loss weights in force (shares of their sum), coloured by the objective: a ternary
    plot for three tasks, a scatter matrix for more, a line for two."""
    done = [t for t in data.complete if t.weights]
    tasks = sorted({k for t in done for k in t.weights})
    if len(done) < 1 or len(tasks) < 2:
        return None
    shares = [[t.weights.get(k, 0.0) / (sum(t.weights.values()) or 1.0) for k in tasks] for t in done]
    values = [_value(t) for t in done]
    marker = dict(color=values, colorscale=COLORS, showscale=True, size=11, colorbar=dict(title=data.metric_names[0]),
                  symbol=["circle" if _given(t.weighting) else "diamond" for t in done])
    text = [f"trial {t.number} ({t.weighting})" for t in done]
    if len(tasks) == 3:
        fig = _fig(height=480, ternary=dict(aaxis_title=tasks[0], baxis_title=tasks[1], caxis_title=tasks[2]))
        fig.add_trace(go.Scatterternary(a=[s[0] for s in shares], b=[s[1] for s in shares], c=[s[2] for s in shares],
                                        mode="markers", marker=marker, text=text, hoverinfo="text+a+b+c"))
    elif len(tasks) == 2:
        fig = _fig(xaxis_title=f"share of {tasks[0]}", yaxis_title=data.metric_names[0])
        fig.add_scatter(x=[s[0] for s in shares], y=values, mode="markers", marker=marker, text=text)
    else:
        fig = _fig(height=200 * len(tasks))
        fig.add_trace(go.Splom(dimensions=[dict(label=k, values=[s[i] for s in shares]) for i, k in enumerate(tasks)],
                               marker=marker, text=text, diagonal_visible=False))
    return fig


def strategies(data: StudyData) -> go.Figure | None:
    """The objective of the strategies that take the given weights beside each learned one."""
    done = data.complete
    names = sorted({t.weighting for t in done}, key=lambda w: (not _given(w), w))
    if not done:
        return None
    fig = _fig(yaxis_title=_objective(data), showlegend=False)
    for w in names:
        ts = [t for t in done if t.weighting == w]
        fig.add_trace(go.Box(y=[_value(t) for t in ts], name=f"{w} ({len(ts)})", boxpoints="all", pointpos=0,
                             jitter=0.3, text=[f"trial {t.number}" for t in ts]))
    return fig


def curves(data: StudyData) -> go.Figure | None:
    """Each trial's objective per evaluation; an X where the scheduler stopped a trial."""
    shown = [t for t in data.trials if t.curve]
    if not shown:
        return None
    rungs = data.train_samples  # a data-size study: one point per rung, the rung's training segments per pair
    xaxis = ({"title": "training segments per pair (data-size rung)", "tickmode": "array",
              "tickvals": list(range(1, len(rungs) + 1)), "ticktext": rungs} if rungs else {"title": "step"})
    fig = _fig(xaxis=xaxis, yaxis_title=data.metric_names[0] + (" per rung" if rungs else " per evaluation"),
               height=460, showlegend=len(shown) <= 25)
    for t in shown:
        steps = sorted(t.curve)
        dash = "solid" if t.state == "COMPLETE" else "dot"
        fig.add_scatter(x=steps, y=[t.curve[s] for s in steps], mode="lines", name=f"trial {t.number}",
                        legendgroup=str(t.number), line=dict(width=1.5, dash=dash))
    stopped = [t for t in shown if t.state == "PRUNED"]
    if stopped:
        fig.add_scatter(x=[max(t.curve) for t in stopped], y=[t.curve[max(t.curve)] for t in stopped], mode="markers",
                        marker=dict(symbol="x", size=12, color="crimson"), name="stopped by the scheduler",
                        text=[f"trial {t.number}" for t in stopped])
    return fig


def cost_front(points: Sequence[tuple[float, float, int]], *, maximize: bool) -> list[int]:
    """The trials no other beats on both cost (lower) and value: ``(seconds, value, number)``."""
    front, best = [], -math.inf
    for _, value, number in sorted(points, key=lambda p: (p[0], -p[1] if maximize else p[1])):
        v = value if maximize else -value
        if v > best:
            front.append(number)
            best = v
    return front


def cost(data: StudyData) -> go.Figure | None:
    """The first objective of each complete trial against its compute (trial seconds), the
    front of the cheapest config for each level of quality joined by a line."""
    done = [t for t in data.complete if t.seconds is not None and t.values]
    if not done:
        return None
    maximize = data.directions[0] == "maximize"
    front = set(cost_front([(float(t.seconds or 0), _value(t), t.number) for t in done], maximize=maximize))
    fig = _fig(xaxis_title="trial seconds (compute)", yaxis_title=_objective(data))
    for on in (False, True):
        ts = sorted((t for t in done if (t.number in front) == on), key=lambda t: float(t.seconds or 0))
        size = [(t.config.get("data") or {}).get("max_train_samples") for t in ts]
        fig.add_scatter(x=[t.seconds for t in ts], y=[_value(t) for t in ts], mode="lines+markers" if on else "markers",
                        name="cheapest for its quality" if on else "other configs", marker=dict(size=10 if on else 7),
                        text=[f"trial {t.number}: {t.step} steps, {'all' if n is None else n} training segments "
                              f"per pair" for t, n in zip(ts, size)])
    return fig


def pareto(data: StudyData, front: Sequence[int]) -> go.Figure | None:
    """The first two objectives of every complete trial, the Pareto front highlighted."""
    if len(data.metric_names) < 2 or not data.complete:
        return None
    fig = _fig(xaxis_title=f"{data.metric_names[0]} ({data.directions[0]})",
               yaxis_title=f"{data.metric_names[1]} ({data.directions[1]})")
    for on in (False, True):
        points = sorted((t.values, t.number) for t in data.complete if t.values and (t.number in front) == on)
        fig.add_scatter(x=[v[0] for v, _ in points], y=[v[1] for v, _ in points],
                        name="Pareto front" if on else "dominated",
                        mode="lines+markers" if on else "markers", text=[f"trial {n}" for _, n in points],
                        marker=dict(size=10 if on else 7))
    return fig


def intervals(unc: Uncertainty, flr: Floor | None = None) -> go.Figure | None:
    """Bootstrap intervals of the top configs' metric, per pair; of the DA Pearson, beside the floor."""
    if not unc.intervals:
        return None
    trials = list(next(iter(unc.intervals.values())))
    fig = _fig(yaxis_title=f"dev {unc.metric}, {100 * (1 - unc.alpha):g} % interval",
               xaxis=_pair_axis(list(unc.intervals)))
    for t in trials:
        pairs = [p for p in unc.intervals if t in unc.intervals[p]]
        mid = [unc.intervals[p][t][0] for p in pairs]
        fig.add_scatter(x=pairs, y=mid, mode="markers", name=f"trial {t}", marker=dict(size=10), error_y=dict(
            type="data", symmetric=False, array=[unc.intervals[p][t][2] - m for p, m in zip(pairs, mid)],
            arrayminus=[m - unc.intervals[p][t][1] for p, m in zip(pairs, mid)]))
    fig.update_layout(scattermode="group")
    if unc.metric == "da.pearson":
        _floor_lines(fig, list(unc.intervals), flr)
    return fig


def agreement(agg: Aggregation) -> go.Figure | None:
    """Kendall tau between the rankings of every pair of aggregators."""
    methods = list(agg.by_method)
    if len(agg.scores) < 2:
        return None
    z = [[agg.tau[(a, b)] for b in methods] for a in methods]
    fig = _fig(height=80 + 50 * len(methods), yaxis_autorange="reversed")
    fig.add_trace(go.Heatmap(z=z, x=methods, y=methods, zmin=-1, zmax=1, colorscale="RdBu",
                             text=[["undefined" if math.isnan(v) else f"{v:.2f}" for v in r] for r in z],
                             texttemplate="%{text}", colorbar=dict(title="Kendall τ")))
    return fig


def ensemble(ens: Ensemble | None, flr: Floor | None = None) -> go.Figure | None:
    """Pearson of each member and of their average, per pair and task; the DA floor dashed."""
    if ens is None or not ens.scores:
        return None
    keys = [f"trial {t}" for t in ens.members] + ["ensemble"]
    cols = [(p, task) for p, tasks in ens.scores.items() for task in tasks]
    fig = make_subplots(rows=1, cols=len(cols), subplot_titles=[f"{p} {task}" for p, task in cols])
    fig.update_layout(**_LAYOUT, showlegend=False)
    for i, (p, task) in enumerate(cols, start=1):
        row = ens.scores[p][task]
        fig.add_bar(x=keys, y=[row[k]["pearson"] for k in keys], row=1, col=i,
                    marker_color=["#7a9cc6"] * (len(keys) - 1) + ["#e07b39"])
        v = flr.values.get(p, math.nan) if flr is not None and task == FLOOR_TASK else math.nan
        if math.isfinite(v):
            fig.add_hline(y=v, line=dict(dash="dash", color="#333", width=2), row=1, col=i,
                          annotation_text=f"floor {v:.3f}", annotation_position="top left", annotation_font_size=10)
    fig.update_yaxes(title_text="dev Pearson", row=1, col=1)
    return fig

"""reports/: extract and aggregate with known answers, bootstrap, ensemble, the HTML, export, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState
from scipy.stats import pearsonr

from tests.reports_helpers import PAIRS, add, config, new_study, write_history, write_preds

REPO = Path(__file__).resolve().parents[1]
SQRT2 = math.sqrt(2)

# Per-pair da.pearson of the three complete configs (en-de, ro-en, et-en), chosen so that
# every aggregate is exact in binary floating point. Worked out by hand:
#   trial  scores            mean   median  worst  borda  mean_rank  mean_z
#   0      .75 .25 .5        .5     .5      .25    2.5    1/2        0
#   1      .5  .5  .5        .5     .5      .5     2.5    1/2        -2*sqrt2/9
#   2      .25 1.  .75       2/3    .75     .25    4      2/3        sqrt2/3
SCORES = {0: (0.75, 0.25, 0.5), 1: (0.5, 0.5, 0.5), 2: (0.25, 1.0, 0.75)}


@pytest.fixture
def ranked(tmp_path, data_root, cache_dir):
    """Three complete configs with known scores, a pruned, a failed, one missing a pair."""
    study = new_study(tmp_path)
    for n, s in SCORES.items():
        weighting = "uncertainty" if n == 2 else "fixed"
        run = tmp_path / f"trial-{n}"
        if weighting != "fixed":
            write_history(run, {"da": 0.5, "hter": 1.5, "word_tags": 1.0})
        add(study, values=[sum(s) / 3], scores=dict(zip(PAIRS, s)), run_dir=run, curve={4: 0.1, 8: sum(s) / 3},
            cfg=config(data_root, cache_dir, lr=10 ** -(n + 2), weighting=weighting, weights=(1.0, 0.5 + n, 1.5)))
    add(study, state=TrialState.PRUNED, scores={"en-de": 0.9}, cfg=config(data_root, cache_dir, lr=0.05),
        curve={4: 0.05})
    add(study, state=TrialState.FAIL, cfg=config(data_root, cache_dir, lr=0.09),
        fail_reason="TrainingDiverged('loss is nan')")
    add(study, values=[0.95], scores={"en-de": 0.95, "ro-en": 0.95}, cfg=config(data_root, cache_dir, lr=0.02))
    return study


# --- extract ---------------------------------------------------------------------------------


def test_extract_makes_a_tidy_table_of_every_trial(ranked):
    from reports.extract import extract

    data = extract(ranked)
    assert [t.state for t in data.trials] == ["COMPLETE"] * 3 + ["PRUNED", "FAIL", "COMPLETE"]
    assert data.pairs == PAIRS and data.aggregator == "mean" and data.metric_names == ["da.pearson"]
    rows = [r for r in data.rows if r.trial == 0 and r.metric == "pearson"]
    assert {(r.pair, r.value) for r in rows} == {("en-de", 0.75), ("ro-en", 0.25), ("et-en", 0.5)}
    assert {r.state for r in data.rows if r.trial == 3} == {"PRUNED"}
    assert len(data.rows) == 2 * (3 * 3 + 1 + 2)  # pearson and mae per pair: 3 full trials, pruned 1, last 2
    assert data.trial(4).fail_reason == "TrainingDiverged('loss is nan')"
    assert data.trial(1).weights == {"da": 1.0, "hter": 1.5, "word_tags": 1.5}  # fixed: the config's
    assert data.trial(2).weights == {"da": 0.5, "hter": 1.5, "word_tags": 1.0}  # learned: the last logged
    assert data.trial(3).curve == {4: 0.05}
    assert set(data.importances["da.pearson"]) == {"train.lr", "weighting"}


def test_extract_and_aggregate_import_neither_torch_ray_nor_plotly():
    code = ("import sys, reports.extract, reports.aggregate\n"
            "bad = [m for m in ('torch', 'ray', 'plotly') if m in sys.modules]\nassert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr


# --- aggregate --------------------------------------------------------------------------------


def test_each_aggregator_scores_and_ranks_as_worked_out_by_hand(ranked):
    from reports.aggregate import aggregate
    from reports.extract import extract

    agg = aggregate(extract(ranked, importances=False))
    assert set(agg.scores) == {0, 1, 2}  # pruned, failed and the config missing a pair are not ranked
    assert agg.incomplete == {5: ["et-en"]}
    expected = {"mean": {0: 0.5, 1: 0.5, 2: 2 / 3}, "median": {0: 0.5, 1: 0.5, 2: 0.75},
                "worst": {0: 0.25, 1: 0.5, 2: 0.25}, "borda": {0: 2.5, 1: 2.5, 2: 4.0},
                "mean_rank": {0: 0.5, 1: 0.5, 2: 2 / 3}, "mean_z": {0: 0.0, 1: -2 * SQRT2 / 9, 2: SQRT2 / 3}}
    for method, values in expected.items():
        assert agg.by_method[method] == pytest.approx(values, abs=1e-12), method
    assert agg.rankings["mean"] == [2, 0, 1] and agg.ranks["mean"] == {2: 1, 0: 2, 1: 2}  # a tie shares rank 2
    assert agg.rankings["worst"] == [1, 0, 2] and agg.ranks["worst"] == {1: 1, 0: 2, 2: 2}
    assert agg.rankings["borda"] == [2, 0, 1] and agg.rankings["mean_z"] == [2, 0, 1]


def test_kendall_tau_between_aggregators(ranked):
    from reports.aggregate import aggregate
    from reports.extract import extract

    agg = aggregate(extract(ranked, importances=False))
    # mean (.5, .5, .67) vs worst (.25, .5, .25): pairs (0,1) tied in mean, (0,2) tied in worst,
    # (1,2) discordant; tau-b = (0 - 1) / sqrt((3 - 1) * (3 - 1)) = -0.5
    assert agg.tau[("mean", "worst")] == pytest.approx(-0.5)
    assert agg.tau[("mean", "borda")] == pytest.approx(1.0)  # the same order, ties included
    assert agg.tau[("worst", "worst")] == pytest.approx(1.0)


def test_minimize_metrics_rank_the_lowest_first(tmp_path, data_root, cache_dir):
    from reports.aggregate import aggregate
    from reports.extract import extract

    study = new_study(tmp_path, metrics=["da.mae"], directions=["minimize"], pairs=["en-de", "ro-en"])
    for lr, s in ((1e-3, (0.3, 0.9)), (1e-2, (0.5, 0.5)), (1e-4, (0.2, 0.4))):
        add(study, values=[sum(s) / 2], scores={"en-de": s[0], "ro-en": s[1]}, metric="da.mae",
            cfg=config(data_root, cache_dir, lr=lr))
    agg = aggregate(extract(study, importances=False))
    assert agg.rankings["mean"] == [2, 1, 0]  # .3, .5, .6
    assert agg.rankings["worst"] == [2, 1, 0]  # max: .4, .5, .9
    assert agg.by_method["borda"] == {0: 1.0, 1: 1.0, 2: 4.0}  # lower wins each pair: 2 beats both twice


def test_unknown_aggregator_is_named_with_the_valid_ones(ranked):
    from reports.aggregate import aggregate
    from reports.extract import ReportError, extract

    with pytest.raises(ReportError, match=r"unknown aggregator 'wrost'; valid: mean, median, worst, mean_rank, "
                                          r"mean_z, borda"):
        aggregate(extract(ranked, importances=False), methods=["wrost"])


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_finds_a_clear_winner_and_no_winner_in_a_tie():
    from reports.bootstrap import bootstrap, interval, paired_p

    rng = np.random.default_rng(1)
    gold = rng.normal(size=50)
    perfect, noise = gold * 2 + 1, rng.normal(size=50)  # Pearson 1 on every resample; ~0
    s = bootstrap({1: perfect, 2: noise, 3: perfect.copy()}, gold, metric="pearson", n=200, seed=0)
    assert interval(s[1]) == pytest.approx((1.0, 1.0))
    assert paired_p(s[1], s[2], higher_is_better=True) == 0.0  # better on every resample
    assert paired_p(s[1], s[3], higher_is_better=True) == 1.0  # identical: never strictly better
    lo, hi = interval(s[2])
    assert lo < 0 < hi  # noise: the interval covers zero
    mae = bootstrap({1: gold, 2: gold + 1}, gold, metric="mae", n=50, seed=0)  # 0 vs 1 on every resample
    assert paired_p(mae[1], mae[2], higher_is_better=False) == 0.0


def _gold(data_root: Path, pair: str, task: str, n: int) -> np.ndarray:
    from mtl.data.mlqe import read_pair

    return np.array([r[task] for r in read_pair(data_root, pair, "dev")[:n]])


@pytest.fixture
def with_predictions(ranked, tmp_path, data_root):
    """Dev predictions of the top configs (2, 0, 1 by mean) against the real gold labels:
    on en-de trial 2 predicts the gold itself and trial 0 noise; on ro-en and et-en both
    predict the same, so the winner cannot be better there."""
    rng = np.random.default_rng(5)
    for pair in PAIRS:
        for task in ("da", "hter"):
            gold = _gold(data_root, pair, task, 40)
            same = gold + rng.normal(scale=gold.std(), size=40)
            preds = {2: gold, 0: rng.normal(size=40), 1: rng.normal(size=40)} if pair == "en-de" else \
                {2: same, 0: same, 1: rng.normal(size=40)}
            for n, p in preds.items():
                write_preds(tmp_path / f"trial-{n}", pair, task, p)
    return ranked


def test_paired_test_says_where_the_winner_is_better_and_where_not(with_predictions):
    from reports.aggregate import aggregate
    from reports.bootstrap import uncertainty, verdict
    from reports.extract import extract

    data = extract(with_predictions, importances=False)
    unc = uncertainty(data, aggregate(data), top=3, n=200)
    assert unc.metric == "da.pearson" and unc.segments == {p: 40 for p in PAIRS} and not unc.notes
    assert set(unc.intervals["en-de"]) == {2, 0, 1}
    point, lo, _hi = unc.intervals["en-de"][2]
    assert point == pytest.approx(1.0, abs=1e-6) and lo == pytest.approx(1.0, abs=1e-6)
    tests = {t.pair: t for t in unc.tests}
    assert tests["en-de"].winner == 2 and tests["en-de"].runner_up == 0
    assert tests["en-de"].significant and tests["en-de"].p == 0.0
    assert not tests["ro-en"].significant and tests["ro-en"].p == 1.0 and tests["ro-en"].delta == 0.0
    text = " ".join(verdict(unc, method="mean"))
    assert re.search(r"Trial 2, the winner by mean, against trial 0, the runner-up, on dev da.pearson "
                     r".* significantly better on en-de", text)
    assert re.search(r"Not significantly better on ro-en .*, et-en .*: there the choice is within noise", text)


def test_missing_predictions_are_said_not_raised(ranked):
    from reports.aggregate import aggregate
    from reports.bootstrap import uncertainty, verdict
    from reports.extract import extract

    data = extract(ranked, importances=False)
    unc = uncertainty(data, aggregate(data), n=20)
    assert not unc.intervals and "en-de: trial 2 has no predictions file" in unc.notes[0]
    assert verdict(unc, method="mean")[0].startswith("No paired test: en-de: trial 2 has no predictions file")


# --- ensemble ---------------------------------------------------------------------------------


def test_an_ensemble_of_errors_that_cancel_beats_its_members(tmp_path, ranked, data_root):
    from reports.aggregate import aggregate
    from reports.ensemble import ensemble, write_ensemble
    from reports.extract import extract

    rng = np.random.default_rng(3)
    for pair in PAIRS:
        gold = _gold(data_root, pair, "da", 30)
        err = rng.normal(size=30)
        # en-de: errors that cancel (the mean is the gold); ro-en/et-en: trial 2 exact, trial 0 noise
        preds = {2: gold + err, 0: gold - err} if pair == "en-de" else {2: gold, 0: rng.normal(size=30)}
        for n, p in preds.items():
            write_preds(tmp_path / f"trial-{n}", pair, "da", p)
    data = extract(ranked, importances=False)
    ens = ensemble(data, aggregate(data), top=2)
    assert ens.members == [2, 0]
    assert ens.scores["en-de"]["da"]["ensemble"]["pearson"] == pytest.approx(1.0, abs=1e-6)
    assert ens.beats_best == {"en-de": {"da": True}, "ro-en": {"da": False}, "et-en": {"da": False}}
    assert any("trial 2 has no predictions file" in n and "hter" in n for n in ens.notes)
    blob = json.loads(write_ensemble(ens, tmp_path / "ens.json").read_text())
    assert blob["members"] == [2, 0] and "en-de da: the average of trials 2, 0 beats" in blob["summary"][0]


def test_an_ensemble_needs_two_configs(ranked):
    from reports.aggregate import aggregate
    from reports.ensemble import ensemble
    from reports.extract import ReportError, extract

    data = extract(ranked, importances=False)
    with pytest.raises(ReportError, match="--top must be at least 2 to make an ensemble, got 1"):
        ensemble(data, aggregate(data), top=1)


# --- the zero-training floor ------------------------------------------------------------------


def _direct_floor(data_root: Path, pair: str, n: int | None) -> float:
    """Pearson of model_scores with z_mean over the first n rows, read straight from the DA TSV."""
    with tarfile.open(data_root / "direct-assessments" / "dev" / f"{pair}-dev.tar.gz") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(".tsv"))
        text = tar.extractfile(member).read().decode("utf-8")
    csv.field_size_limit(2**31 - 1)
    rows = list(csv.DictReader(io.StringIO(text, newline="\n"), delimiter="\t", quoting=csv.QUOTE_NONE))[:n]
    return float(pearsonr([float(r["model_scores"]) for r in rows], [float(r["z_mean"]) for r in rows]).statistic)


@pytest.mark.parametrize("pair", ["en-de", "ro-en"])
def test_the_floor_is_the_pearson_of_model_scores_on_the_first_rows(data_root, pair):
    from mtl.evaluate import model_score_floor

    few = model_score_floor(data_root, pair, "dev", max_samples=24)
    every = model_score_floor(data_root, pair, "dev")
    assert few == pytest.approx(_direct_floor(data_root, pair, 24), abs=1e-12)
    assert every == pytest.approx(_direct_floor(data_root, pair, None), abs=1e-12)
    assert abs(few - every) > 0.05  # the rows matter: the floor must be taken on the rows the trials score
    assert every == pytest.approx({"en-de": 0.25, "ro-en": 0.64}[pair], abs=0.01)  # the values issue 7 quotes


def test_the_floor_refuses_an_empty_slice(data_root):
    from mtl.evaluate import model_score_floor

    with pytest.raises(ValueError, match=r"`max_samples >= 1` must hold \(or None\), but got max_samples=0"):
        model_score_floor(data_root, "en-de", "dev", max_samples=0)


def test_the_report_takes_the_floor_on_the_rows_the_trials_scored(ranked, data_root):
    from reports.aggregate import aggregate
    from reports.extract import extract
    from reports.floor import floor, verdict

    data = extract(ranked, importances=False)
    flr = floor(data, aggregate(data))
    assert (flr.split, flr.max_samples, flr.source, flr.notes) == ("dev", 24, 2, [])  # trial 2: best by mean
    direct = {p: _direct_floor(data_root, p, 24) for p in PAIRS}
    assert flr.values == pytest.approx(direct, abs=1e-12)
    assert flr.margins(2) == pytest.approx({p: s - direct[p] for p, s in zip(PAIRS, SCORES[2])})
    # trial 2 (.25, 1, .75) against the floors on 24 rows (en-de .403, ro-en .814, et-en .289)
    assert flr.cleared(2) == ["ro-en", "et-en"] and not flr.clears(2)
    assert flr.worst(2) == ("en-de", pytest.approx(0.25 - direct["en-de"]))
    assert set(flr.da) == {0, 1, 2, 5} and flr.da[5] == {"en-de": 0.95, "ro-en": 0.95}  # no et-en score: unknown
    assert verdict(flr, 2) == (f"Best config vs floor: clears it on 2 of 3 pairs (worst margin "
                               f"{0.25 - direct['en-de']:+.3f} on en-de: DA Pearson 0.250 vs {direct['en-de']:.3f}, "
                               "NMT model_scores (no training), on the first 24 dev segments); not above it on en-de.")
    assert verdict(flr, 5).endswith("clears it on 2 of 3 pairs (worst margin +0.136 on ro-en: DA Pearson 0.950 vs "
                                    "0.814, NMT model_scores (no training), on the first 24 dev segments); unknown on "
                                    "et-en.")


# --- the HTML report ---------------------------------------------------------------------------


def figures_of(page: str) -> dict[str, dict]:
    """The figure JSON embedded in a report page, by section id."""
    found = re.findall(r'<script type="application/json" class="figure" data-target="fig-([a-z]+)">(.*?)</script>',
                       page, flags=re.S)
    return {name: json.loads(blob) for name, blob in found}


SINGLE_OBJECTIVE_FIGURES = {"history", "importances", "parallel", "heatmap", "floor", "simplex", "strategies",
                            "curves", "cost", "intervals", "agreement", "ensemble"}
FLOOR = "NMT model_scores (no training)"


def test_the_report_holds_every_figure_and_plotly_once(with_predictions, tmp_path, data_root):
    from reports import build_report

    path = build_report(with_predictions, out=tmp_path / "report", n_boot=50)
    page = path.read_text(encoding="utf-8")
    figs = figures_of(page)
    assert set(figs) == SINGLE_OBJECTIVE_FIGURES
    for name, fig in figs.items():
        assert fig["data"], name
    assert figs["simplex"]["data"][0]["type"] == "scatterternary"
    assert [d["type"] for d in figs["strategies"]["data"]] == ["box", "box"]  # fixed beside uncertainty
    assert figs["heatmap"]["data"][0]["y"] == ["#1 trial 2", "#2 trial 0", "#3 trial 1", FLOOR]
    floors = [_direct_floor(data_root, p, 24) for p in PAIRS]
    assert figs["heatmap"]["data"][0]["z"][-1] == pytest.approx(floors, abs=1e-12)
    for name in ("floor", "intervals"):  # the floor of each pair: a dashed line across its category
        shapes = [(sh["x0"], sh["y0"], sh["line"]["dash"]) for sh in figs[name]["layout"]["shapes"]]
        assert shapes == [(i - 0.42, pytest.approx(f), "dash") for i, f in enumerate(floors)], name
        assert figs[name]["layout"]["xaxis"]["categoryarray"] == PAIRS
    assert [sh["name"] for sh in figs["floor"]["layout"]["shapes"] if sh["showlegend"]] == [FLOOR]
    below = next(d for d in figs["floor"]["data"] if d["name"] == "not above the floor")
    assert sorted(zip(below["x"], below["text"])) == [("en-de", "trial 2"), ("ro-en", "trial 0"), ("ro-en", "trial 1")]
    assert next(d for d in figs["floor"]["data"] if d["name"] == "best config (trial 2)")["y"] == [0.25, 1.0, 0.75]
    hlines = [sh for sh in figs["ensemble"]["layout"]["shapes"]]
    assert [sh["y0"] for sh in hlines] == pytest.approx(floors)  # one per pair's da panel, none on hter
    margin = f"{0.25 - floors[0]:+.3f}"
    assert f"Best config vs floor: clears it on 2 of 3 pairs (worst margin {margin} on en-de" in page
    assert f"<td>floor: {FLOOR}</td>" + "".join(f'<td class="num">{f:.4f}</td>' for f in floors) in page
    assert "0 of 4 complete configs clear the floor on every pair" in page
    assert f"<td>no: 2 of 3 pairs; worst {margin} (en-de)</td>" in page  # the top-config table, trial 2
    assert f'<td class="num">1.000 ({1 - floors[1]:+.3f})</td>' in page  # trial 2 on ro-en in the floor table
    stopped = [d for d in figs["curves"]["data"] if d.get("name") == "stopped by the scheduler"]
    assert stopped and stopped[0]["x"] == [4]  # the pruned trial's last step
    assert page.count("Plotly.newPlot") == 1 and not re.search(r"<script[^>]*\bsrc=", page)  # nothing to fetch
    assert 3e6 < len(page) < 8e6  # plotly.js (~4.8 MB) embedded once
    assert "Nothing to draw: a single-objective study has no Pareto front." in page
    assert "Best config: trial 2" in page and "significantly better on en-de" in page
    assert "TrainingDiverged(&#x27;loss is nan&#x27;)" in page  # failed trials with their reasons
    assert "Trial 5 is not ranked: no finite da.pearson on et-en." in page
    csv = (tmp_path / "report" / "metrics.csv").read_text().splitlines()
    assert csv[0].startswith("trial,state,pair,task,metric,value") and len(csv) == 1 + 24


def test_a_best_config_above_the_floor_everywhere_is_said_so(tmp_path, data_root, cache_dir):
    from reports import build_report

    study = new_study(tmp_path)
    for lr, scores in ((1e-3, (0.9, 0.85, 0.95)), (1e-2, (0.5, 0.5, 0.5))):
        add(study, values=[sum(scores) / 3], scores=dict(zip(PAIRS, scores)), cfg=config(data_root, cache_dir, lr=lr))
    page = build_report(study, out=tmp_path / "r", n_boot=20).read_text(encoding="utf-8")
    ro_en = _direct_floor(data_root, "ro-en", 24)  # .814: the worst pair of trial 0
    assert (f"Best config vs floor: clears it on 3 of 3 pairs (worst margin {0.85 - ro_en:+.3f} on ro-en: DA Pearson "
            f"0.850 vs {ro_en:.3f}, {FLOOR}, on the first 24 dev segments).") in page
    assert "1 of 2 complete configs clear the floor on every pair" in page
    assert f"<td>yes, every pair; worst {0.85 - ro_en:+.3f} (ro-en)</td>" in page


def test_a_data_root_not_readable_here_is_said_in_the_page(ranked, tmp_path):
    from reports import build_report

    page = build_report(ranked, out=tmp_path / "r", n_boot=20, data_root=str(tmp_path / "elsewhere"))
    text = page.read_text(encoding="utf-8")
    assert (f"Best config vs floor: not computed: en-de, ro-en, et-en: no floor: {tmp_path / 'elsewhere'}: not a "
            "directory, expected the MLQE-PE root (direct-assessments/, post-editing/).") in text
    assert "shapes" not in figures_of(text)["floor"]["layout"]  # the configs are drawn, no floor line


def test_a_study_without_da_has_no_floor(tmp_path, data_root, cache_dir):
    from plotly.offline import get_plotlyjs

    from reports import build_report

    study = new_study(tmp_path, metrics=["hter.pearson"])
    for lr, v in ((1e-3, 0.3), (1e-2, 0.5)):
        add(study, values=[v], scores=dict.fromkeys(PAIRS, v), metric="hter.pearson", curve={4: v},
            cfg=config(data_root, cache_dir, lr=lr, tasks=("hter", "word_tags", "source_tags")))
    page = build_report(study, out=tmp_path / "r", n_boot=20).read_text(encoding="utf-8")
    page = page.replace(get_plotlyjs(), "")  # plotly.js itself speaks of floors
    figs = figures_of(page)
    assert set(figs) == SINGLE_OBJECTIVE_FIGURES - {"floor", "intervals", "ensemble"}
    assert figs["heatmap"]["data"][0]["y"] == ["#1 trial 1", "#2 trial 0"]
    assert "Best config: trial 1" in page
    for absent in ("floor", "model_scores", 'id="floor"'):
        assert absent not in page, absent


def test_a_multi_objective_report_draws_the_pareto_front(tmp_path, data_root, cache_dir):
    from reports import build_report

    study = new_study(tmp_path, metrics=["da.pearson", "da.mae"], directions=["maximize", "minimize"],
                      pairs=["en-de"])
    for lr, v in ((1e-3, [0.5, 0.4]), (1e-2, [0.6, 0.5]), (1e-4, [0.4, 0.6])):  # the last is dominated
        add(study, values=v, scores={"en-de": v[0]}, cfg=config(data_root, cache_dir, lr=lr))
    figs = figures_of(build_report(study, out=tmp_path / "r", n_boot=20).read_text())
    front = next(d for d in figs["pareto"]["data"] if d["name"] == "Pareto front")
    assert front["text"] == ["trial 0", "trial 1"] and "intervals" not in figs


def test_without_plotly_the_report_says_how_to_install_it(ranked, tmp_path):
    code = ("import sys; sys.modules['plotly'] = None\nfrom reports.__main__ import main\n"
            f"sys.exit(main(['build', '--storage', 'sqlite:///{tmp_path / 'synth.db'}', '--out', '{tmp_path / 'r'}']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == ("python -m reports build: the report needs plotly, a dependency of mtlsearch that "
                                   "is missing here: reinstall mtlsearch (pip install -e .) or pip install plotly")


# --- export ------------------------------------------------------------------------------------


def test_export_writes_the_ranked_config_with_where_it_came_from(ranked, tmp_path):
    from mtl.config import load_config
    from reports import export_best

    by_worst = load_config(export_best(ranked, out=tmp_path / "w.yaml", aggregator="worst"))
    assert by_worst.train.lr == pytest.approx(1e-3)  # trial 1: best worst pair
    text = (tmp_path / "w.yaml").read_text()
    assert text.startswith("# Trial 1 of study 'synth': rank 1 by worst (da.pearson=0.5).")
    assert "# Seed 7; pairs en-de, ro-en, et-en; searched: train.lr=0.001, weighting='fixed'" in text
    assert re.search(r"# Packages: mtlsearch \S+, torch \S+, .*optuna 5", text)
    assert "search" not in text.split("# Retrain")[1]  # no search syntax in the config itself
    # the study's own values rank trial 5 first (it has no et-en score, so no aggregator ranks it)
    assert load_config(export_best(ranked, out=tmp_path / "own.yaml")).train.lr == pytest.approx(0.02)
    assert load_config(export_best(ranked, out=tmp_path / "m2.yaml", rank=2, aggregator="mean")).train.lr == \
        pytest.approx(1e-2)  # mean: 2, then 0 and 1 tied at .5: the lower trial number first


def test_export_of_a_per_pair_study_joins_the_pairs(tmp_path, data_root, cache_dir):
    from mtl.config import load_config
    from reports import export_best

    study = new_study(tmp_path, pairs=["en-de", "ro-en"])
    study.set_user_attr("mode", "per_pair")
    per = {}
    for pair in ("en-de", "ro-en"):
        per[pair] = config(data_root, cache_dir, lr=3e-3)
        per[pair]["data"]["pairs"] = [pair]
    add(study, values=[0.4], scores={"en-de": 0.3, "ro-en": 0.5}, cfg=per["en-de"], config=per)
    path = export_best(study, out=tmp_path / "pp.yaml")
    assert load_config(path).data.pairs == ("en-de", "ro-en")
    assert "one model per pair (per_pair mode)" in path.read_text()


@pytest.mark.parametrize("rank, match", [(0, "--rank must be 1 or more, got 0"),
                                          (4, "--rank 4: study 'synth' has only 3 complete trial.s. ranked by worst")])
def test_export_refuses_a_rank_out_of_range(ranked, tmp_path, rank, match):
    from reports import export_best
    from reports.extract import ReportError

    with pytest.raises(ReportError, match=match):
        export_best(ranked, out=tmp_path / "x.yaml", rank=rank, aggregator="worst")


# --- the command line ----------------------------------------------------------------------------


def test_cli_builds_exports_and_ensembles(with_predictions, tmp_path, capsys):
    from reports.__main__ import main

    db = f"sqlite:///{tmp_path / 'synth.db'}"
    assert main(["build", "--storage", db, "--out", str(tmp_path / "rep"), "--bootstrap", "20"]) == 0
    assert (tmp_path / "rep" / "index.html").exists()
    assert main(["export", "--storage", db, "--study", "synth", "--rank", "1", "--aggregator", "borda",
                 "--out", str(tmp_path / "best.yaml")]) == 0
    assert "rank 1 by borda" in (tmp_path / "best.yaml").read_text()
    assert main(["ensemble", "--storage", db, "--top", "2", "--out", str(tmp_path / "e.json")]) == 0
    out = capsys.readouterr().out
    assert "report: " in out and "retrain: python -m mtl train --config" in out and "ensemble: " in out


@pytest.mark.parametrize("argv, message", [
    (["export", "--storage", "sqlite:///{tmp}/nope.db", "--out", "x.yaml"],
     "python -m reports export: --storage sqlite:///{tmp}/nope.db: no such SQLite file: {tmp}/nope.db"),
    (["export", "--storage", "sqlite:///{tmp}/synth.db", "--study", "synht", "--out", "x.yaml"],
     "python -m reports export: --study 'synht' is not in sqlite:///{tmp}/synth.db; it holds: synth"),
    (["build", "--storage", "sqlite:///{tmp}/synth.db", "--top", "0", "--out", "r"],
     "python -m reports build: --top must be >= 1 and --bootstrap >= 10, got 0 and 1000"),
    (["export", "--storage", "postgresql+nodriver://u@h/db", "--out", "x.yaml"],
     "python -m reports export: --storage postgresql+nodriver://u@h/db: SQLAlchemy knows no database "
     "'postgresql+nodriver'.*"),
    (["ensemble", "--storage", "sqlite:///{tmp}/synth.db", "--top", "1", "--out", "x.json"],
     "python -m reports ensemble: --top must be at least 2 to make an ensemble, got 1"),
])
def test_cli_user_errors_are_one_clean_line_and_exit_2(ranked, tmp_path, capsys, argv, message):
    from reports.__main__ import main

    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    assert re.fullmatch(re.escape(message.replace("{tmp}", str(tmp_path))).replace(r"\.\*", ".*"),
                        capsys.readouterr().err.strip())
    assert not (tmp_path / "nope.db").exists()  # a wrong path creates no empty database


def test_cli_aggregator_choices_are_the_reports_methods():
    from reports.__main__ import METHODS as CLI
    from reports.aggregate import METHODS

    assert CLI == METHODS


def test_cli_help_is_quick_and_needs_no_heavy_import():
    code = ("import sys\nfrom reports.__main__ import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n"
            "bad = [m for m in ('torch', 'ray', 'plotly') if m in sys.modules]\nassert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "python -m reports export" in done.stdout and "{build,export,ensemble}" in done.stdout


# --- in a browser ---------------------------------------------------------------------------------


def _chromium() -> str | None:
    import shutil

    return next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)


@pytest.mark.browser
@pytest.mark.skipif(_chromium() is None, reason="needs headless Chromium (Debian: apt-get install chromium)")
def test_the_report_opens_in_chromium_without_errors_and_every_plot_renders(with_predictions, tmp_path):
    from reports import build_report

    page = build_report(with_predictions, out=tmp_path / "report", n_boot=20)
    expected = set(figures_of(page.read_text(encoding="utf-8")))
    done = subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom",
                           page.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line and "GL Driver Message" not in line
               and "fallback to software WebGL" not in line]
    assert not console, console  # no uncaught error, nothing the loader reported
    dom = done.stdout
    assert ">figure failed:" not in dom
    divs = dict(re.findall(r'id="fig-([a-z]+)"(.*?)(?=id="fig-|$)', dom, flags=re.S))  # each up to the next
    rendered = {name for name, div in divs.items() if 'class="plot-container plotly"' in div and "main-svg" in div}
    assert rendered == expected


@pytest.mark.parametrize("stored", ["mode-and-configs", "older-one-config"])
def test_a_single_pair_per_pair_study_reads_the_pairs_run_directory(tmp_path, data_root, cache_dir, stored):
    """per_pair with one pair trains into run_dir/<pair>/: the learned weights, the learning curve
    and the predictions of the report come from there (not from run_dir/), whatever shape stored it."""
    from reports.aggregate import aggregate
    from reports.bootstrap import uncertainty
    from reports.extract import extract
    from reports.record import TrialConfigs

    study = new_study(tmp_path, pairs=["en-de"])
    study.set_user_attr("mode", "per_pair")
    rng = np.random.default_rng(3)
    gold = _gold(data_root, "en-de", "da", 30)
    for n, lr in enumerate((1e-3, 3e-3)):
        cfg = config(data_root, cache_dir, lr=lr, weighting="uncertainty")
        cfg["data"]["pairs"] = ["en-de"]
        run = tmp_path / f"trial-{n}"
        write_history(run / "en-de", {"da": 0.25, "hter": 2.0, "word_tags": 0.75})
        with (run / "en-de" / "history.jsonl").open("a") as history:  # an evaluation: the learning curve
            history.write(json.dumps({"step": 2, "objective": 0.4 - n / 10, "eval": {}}) + "\n")
        write_preds(run / "en-de", "en-de", "da", gold + rng.normal(scale=0.5 + n, size=30))
        attr = TrialConfigs("per_pair", {"en-de": cfg}).to_attr() if stored == "mode-and-configs" else cfg
        add(study, values=[0.5 - n / 10], scores={"en-de": 0.5 - n / 10}, cfg=cfg, run_dir=run, config=attr)
    data = extract(study, importances=False)
    first = data.trial(0)
    assert first.configs is not None and first.configs.mode == "per_pair"
    assert first.weights == {"da": 0.25, "hter": 2.0, "word_tags": 0.75}  # the learned ones, from en-de/
    assert first.curve == {2: pytest.approx(0.4)}  # the learning curve, from en-de/history.jsonl
    unc = uncertainty(data, aggregate(data), top=2, n=50)
    assert not unc.notes and unc.segments == {"en-de": 30}  # the predictions were found under en-de/

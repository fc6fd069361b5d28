"""A search that spends less: pairs as instances (racing), training-data size as a fidelity,
warm starts from earlier studies. Space checks and rules without Ray; each capability once end
to end with a real local Ray, SQLite studies and tiny models."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from mtl.rundir import RunDir
from search.racing import Race
from search.space import SpaceError, load_space
from tests.search_fixtures import space_file, study_of


def _space_errors(tmp_path: Path, data_root: Path, cache_dir: Path, **kw) -> str:
    with pytest.raises(SpaceError) as e:
        load_space(space_file(tmp_path, data_root, cache_dir, **kw))
    return str(e.value)


# --- racing: the rules and the space checks -------------------------------------------------


def test_the_sign_rule_stops_only_when_every_pair_scored_is_worse_by_the_margin():
    race = Race(rule="sign", min_pairs=2, margin=0.05)
    best = {"a": 0.5, "b": 0.4, "c": 0.3}
    assert race.verdict({"a": 0.3}, best, maximize=True) is None  # one pair: below min_pairs
    assert race.verdict({"a": 0.3, "b": 0.2}, best, maximize=True) == \
        "worse by more than 0.05 on all 2 pairs scored"
    assert race.verdict({"a": 0.3, "b": 0.37}, best, maximize=True) is None  # within the margin on b
    assert race.verdict({"a": 0.3, "b": 0.5}, best, maximize=True) is None
    # minimize: lower is better, so higher values are worse
    assert race.verdict({"a": 0.6, "b": 0.5}, best, maximize=False) is not None
    assert race.verdict({"a": 0.3, "b": 0.2}, best, maximize=False) is None
    # an undefined score on a pair counts as worse, never as a pass
    assert race.verdict({"a": math.nan, "b": 0.2}, best, maximize=True) is not None


def test_the_wilcoxon_rule_uses_the_exact_one_sided_test():
    best = {p: 0.5 for p in "abcde"}
    race = Race(rule="wilcoxon", min_pairs=2, p=0.1)
    # 4 pairs all worse: exact one-sided p = 1/16 = 0.0625 < 0.1
    assert "p = 0.0625" in race.verdict({p: 0.4 for p in "abcd"}, best, maximize=True)
    # 3 pairs all worse: p = 1/8 = 0.125, not below 0.1: the test cannot fire on 3 pairs
    assert race.verdict({p: 0.4 for p in "abc"}, best, maximize=True) is None
    assert race.verdict({"a": 0.4, "b": 0.6, "c": 0.4, "d": 0.4}, best, maximize=True) is None


def test_race_mistakes_are_named_with_their_keys(tmp_path, data_root, cache_dir):
    joint = _space_errors(tmp_path, data_root, cache_dir, extra={
        "datasets": {"pairs": ["en-de", "ro-en", "et-en"], "mode": "joint",
                     "race": {"rule": "wilcoxon", "p": 0.125, "min_pairs": 2}}})
    assert "datasets.race.min_pairs: is for mode: per_pair; a joint trial scores all its pairs" in joint
    # a joint trial is scored on all 3 pairs at once: 2^-3 is the floor, not 2^-2 as in per_pair
    assert ("datasets.race.p: 0.125 can never be reached: a trial is scored on its 3 pairs, and the smallest "
            "one-sided Wilcoxon p-value of 3 pairs is 2^-3 = 0.125") in joint
    text = _space_errors(tmp_path, data_root, cache_dir, extra={
        "datasets": {"pairs": ["en-de", "ro-en", "et-en", "si-en"], "mode": "per_pair",
                     "race": {"rule": "wilcoxon", "p": 0.1, "min_pairs": 4, "speed": 2}}})
    assert "datasets.race.min_pairs: must be an integer from 1 to 3" in text
    assert ("datasets.race.p: 0.1 can never be reached: a trial is stopped after at most 3 of its 4 pairs, and "
            "the smallest one-sided Wilcoxon p-value of 3 pairs is 2^-3 = 0.125") in text
    assert "datasets.race.speed: unknown key; valid: rule, min_pairs, margin, p" in text
    rule = _space_errors(tmp_path, data_root, cache_dir, extra={
        "datasets": {"pairs": ["en-de", "ro-en"], "mode": "per_pair", "race": {"rule": "sprint"}}})
    assert "datasets.race.rule: unknown rule 'sprint'; valid: sign, wilcoxon" in rule


# --- data-size rungs: the space checks and Ray's milestones ---------------------------------


def test_data_size_rung_mistakes_are_named_with_their_keys(tmp_path, data_root, cache_dir):
    text = _space_errors(tmp_path, data_root, cache_dir, extra={
        "scheduler": {"name": "asha", "grace_period": 2, "train_samples": [100, 50, "all", 400]},
        "search": {"data.max_train_samples": {"type": "int", "low": 10, "high": 40}}})
    assert "scheduler.grace_period: is set by train_samples (one rung per size); remove it" in text
    assert "scheduler.train_samples: base.train.max_steps is 8: every rung would train the same steps" in text
    assert "scheduler.train_samples[1]: must be larger than the rung before (100), got 50" in text
    assert "scheduler.train_samples[2]: must be an integer >= 1, got 'all'" in text  # all only last
    assert "search.data.max_train_samples: is set by scheduler.train_samples" in text
    median = _space_errors(tmp_path, data_root, cache_dir, train={"max_steps": None, "epochs": 1},
                           extra={"scheduler": {"name": "median", "train_samples": [10, 20]}})
    assert "scheduler.train_samples: scheduler 'median' takes no data-size rungs; use name: asha" in median
    both = _space_errors(tmp_path, data_root, cache_dir, train={"max_steps": None, "epochs": 1}, extra={
        "scheduler": {"name": "asha", "train_samples": [10, 20]},
        "datasets": {"pairs": ["en-de", "ro-en"], "mode": "per_pair", "race": {}}})
    assert "datasets.race: cannot go with scheduler.train_samples" in both


@pytest.mark.ray
def test_asha_milestones_fall_on_the_data_size_rungs(tmp_path, data_root, cache_dir):
    from mtl.registry import load_object
    from search.internals import asha_rungs
    from search.schedulers import SCHEDULERS

    space = load_space(space_file(tmp_path, data_root, cache_dir, train={"max_steps": None, "epochs": 1},
                                  extra={"scheduler": {"name": "asha", "reduction_factor": 3,
                                                       "train_samples": [100, 300, 900, "all"]}}))
    fid = space.fidelity
    assert fid is not None and fid.sizes == (100, 300, 900, None) and fid.describe().startswith("100 -> 300")
    row = SCHEDULERS["asha"]
    scheduler = load_object(row.cls)(**{**row.arguments(space.scheduler_args, metric="score", mode="max"),
                                        **fid.scheduler_arguments()})
    (bracket,) = asha_rungs(scheduler)
    assert sorted(m for m, _ in bracket) == [fid.rung(k) for k in range(4)] == [1, 3, 9, 27]
    assert [fid.index(m) for m in (1, 3, 9, 27)] == [0, 1, 2, 3]


# --- warm starts: reading earlier studies -----------------------------------------------------


def _earlier(url: str, name: str, rows: list[tuple[float, float, str]], *, direction: str = "maximize") -> None:
    study = optuna.create_study(storage=url, study_name=name, direction=direction)
    for lr, value, weighting in rows:
        dists = {"train.lr": FloatDistribution(1e-5, 1.0, log=True),
                 "weighting": CategoricalDistribution(["fixed", "uncertainty", "gradnorm"])}
        study.add_trial(create_trial(params={"train.lr": lr, "weighting": weighting}, distributions=dists,
                                     value=value))
    study.add_trial(create_trial(state=TrialState.FAIL))


def test_warm_start_takes_the_best_trials_that_fit_the_space(tmp_path, data_root, cache_dir):
    from search.warm_start import read_seeds

    url = f"sqlite:///{tmp_path / 'earlier.db'}"
    _earlier(url, "old", [(1e-3, 0.30, "uncertainty"), (2e-3, 0.50, "uncertainty"), (5e-1, 0.90, "uncertainty"),
                          (4e-3, 0.40, "gradnorm"), (3e-3, 0.45, "uncertainty"), (1e-3, 0.35, "fixed")])
    space = load_space(space_file(tmp_path, data_root, cache_dir, extra={
        "warm_start": {"studies": [f"{url}::old"], "top": 3}, "weights": None,
        "enqueue": [{"train.lr": 3e-3, "weighting": "uncertainty"}]}))
    (source,) = read_seeds(space, storage=space.run.storage, study=space.run.study)
    # 0.90 has lr 0.5 > 3e-2 and 0.40 a weighting this space does not search: skipped, with why;
    # 0.45 is the space's own enqueued config: not twice
    assert [s.params for s in source.seeds] == [{"train.lr": 2e-3, "weighting": "uncertainty"},
                                                {"train.lr": 1e-3, "weighting": "fixed"},
                                                {"train.lr": 1e-3, "weighting": "uncertainty"}]
    assert [s.origin["trial"] for s in source.seeds] == [1, 5, 0]
    assert source.seeds[0].origin == {"study": "old", "storage": url, "trial": 1, "value": 0.5}
    assert source.complete == 6 and len(source.outside) == 2
    assert source.outside[0].startswith("trial 2: train.lr=0.5 (a float in [0.0001, 0.03]")
    assert source.summary().startswith("3 configs from study 'old' (6 complete trials; 2 skipped, outside this space")

    _earlier(url, "losses", [(1e-3, 0.9, "fixed"), (2e-3, 0.1, "fixed")], direction="minimize")
    space = load_space(space.source, warm_start=[f"{url}::losses"])
    (source,) = read_seeds(space, storage=space.run.storage, study=space.run.study)
    assert [s.origin["value"] for s in source.seeds] == [0.1, 0.9]  # the earlier study's own direction


def test_warm_start_mistakes_are_one_line_each(tmp_path, data_root, cache_dir):
    from mtl.errors import SetupError
    from search.warm_start import read_seeds

    url = f"sqlite:///{tmp_path / 'earlier.db'}"
    _earlier(url, "old", [(1e-3, 0.3, "fixed")])
    path = space_file(tmp_path, data_root, cache_dir)

    def problem(*studies: str) -> str:
        space = load_space(path, warm_start=list(studies))
        with pytest.raises(SetupError) as e:
            read_seeds(space, storage=space.run.storage, study=space.run.study)
        return str(e.value)

    missing = tmp_path / "missing.db"
    assert problem(f"sqlite:///{missing}::old") == \
        f"--warm-start sqlite:///{missing}::old: no such SQLite file: {missing}"
    assert not missing.exists()  # looking did not create it
    assert problem(f"{url}::olx") == f"--warm-start {url}::olx: --study 'olx' is not in {url}; it holds: old"
    assert problem(f"{url}::old", "olx").startswith("--warm-start olx: no such SQLite file")
    assert "(a bare name is looked up in the search's --storage" in problem("olx")
    storage = load_space(path).run.storage
    assert problem(f"{storage}::tiny") == f"--warm-start {storage}::tiny: a study cannot warm-start itself; " \
                                          f"name an earlier study"
    _earlier(url, "empty", [])
    assert problem(f"{url}::empty") == f"--warm-start {url}::empty: study 'empty' has no COMPLETE trial to start from"
    text = _space_errors(tmp_path, data_root, cache_dir, extra={"warm_start": {"studies": [], "top": 0, "k": 1}})
    assert "warm_start.studies: must list earlier studies" in text
    assert "warm_start.top: must be an integer >= 1" in text and "warm_start.k: unknown key" in text


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.ray
def test_a_raced_out_trial_stops_before_its_other_pairs(tmp_path, data_root, cache_dir, capsys):
    from reports import build_report
    from reports.aggregate import aggregate
    from reports.extract import extract
    from search.run import main

    space = space_file(tmp_path, data_root, cache_dir, trials=6, name="race", extra={
        "datasets": {"pairs": ["en-de", "ro-en"], "mode": "per_pair", "race": {"min_pairs": 1, "margin": 0.0}},
        "scheduler": {"name": "fifo"}, "weights": None})
    assert main(["--space", str(space), "--max-concurrent", "1", "--dry-run"]) == 0
    assert "race       pairs in order; stop a trial after >= 1 pairs by rule sign (margin 0)" in capsys.readouterr().out
    assert main(["--space", str(space), "--max-concurrent", "1", "--cpus-per-trial", "2"]) == 0
    study = study_of(space, "race")
    trials = study.get_trials()
    raced = [t for t in trials if "raced_out" in t.user_attrs]
    assert raced, [t.user_attrs.get("pair_scores") for t in trials]
    for t in raced:
        assert t.state == TrialState.PRUNED and t.user_attrs["pairs_scored"] == ["en-de"]
        assert t.user_attrs["pruned_reason"].startswith("raced out after 1 of 2 pairs against trial ")
        against = study.trials[int(re.search(r"against trial (\d+)", t.user_attrs["raced_out"])[1])]
        mine = t.user_attrs["pair_scores"]["objective"]
        assert set(mine) == {"en-de"} and mine["en-de"] < against.user_attrs["pair_scores"]["objective"]["en-de"]
        assert against.state == TrialState.COMPLETE and against.number < t.number
        run = Path(t.user_attrs["run_dir"])
        assert (run / "en-de" / "metrics.json").exists() and not (run / "ro-en").exists()  # never trained
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.user_attrs["pairs_scored"] == ["en-de", "ro-en"]
            assert sorted(t.intermediate_values) == [1]  # the first pair's score, then the final value
    # the reports rank configs scored on every pair: a raced-out trial's missing pair is no zero
    agg = aggregate(extract(study, importances=False))
    assert set(agg.scores) == {t.number for t in trials if t.state == TrialState.COMPLETE}
    assert build_report(study, out=tmp_path / "report").exists()


@pytest.mark.ray
def test_a_joint_race_stops_a_trial_worse_than_the_incumbent_at_the_same_step(tmp_path, data_root, cache_dir,
                                                                               capsys):
    from search.run import main

    space = space_file(tmp_path, data_root, cache_dir, trials=6, name="jrace", extra={
        "datasets": {"pairs": ["en-de", "ro-en"], "mode": "joint", "race": {"margin": 0.0}},
        "scheduler": {"name": "fifo"}, "weights": None})
    assert main(["--space", str(space), "--max-concurrent", "1", "--dry-run"]) == 0
    assert "race       at each evaluation, against the incumbent at the same step by rule sign (margin 0)" \
        in capsys.readouterr().out
    assert main(["--space", str(space), "--max-concurrent", "1", "--cpus-per-trial", "2"]) == 0
    study = study_of(space, "jrace")
    trials = study.get_trials()
    raced = [t for t in trials if "raced_out" in t.user_attrs]
    assert raced, [t.user_attrs.get("pair_curve") for t in trials]
    for t in raced:
        assert t.state == TrialState.PRUNED and t.user_attrs["pruned_reason"] == t.user_attrs["raced_out"]
        found = re.search(r"raced out at step (\d+) against trial (\d+) at the same step: worse by more than 0 on "
                          r"all 2 pairs scored", t.user_attrs["raced_out"])
        assert found, t.user_attrs["raced_out"]
        step, against = int(found[1]), study.trials[int(found[2])]
        mine, theirs = json.loads(t.user_attrs["pair_curve"])[str(step)], json.loads(
            against.user_attrs["pair_curve"])[str(step)]
        assert all(mine[p] < theirs[p] for p in ("en-de", "ro-en")), (mine, theirs)
        assert against.state == TrialState.COMPLETE and against.number < t.number
        # it stopped training there: no evaluation after the step that stopped it, no metrics.json
        run = RunDir(t.user_attrs["run_dir"])
        assert max(r["step"] for r in run.history_records() if "eval" in r) == step < 8
        assert not run.metrics.exists()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert sorted(json.loads(t.user_attrs["pair_curve"]), key=int) == ["2", "4", "6", "8"]


@pytest.mark.ray
def test_data_size_rungs_then_a_warm_start_from_that_study(tmp_path, data_root, cache_dir, capsys):
    from search.run import main

    rungs = {"name": "asha", "reduction_factor": 2, "train_samples": [12, 24, 48]}
    space = space_file(tmp_path, data_root, cache_dir, trials=5, name="sizes",
                       train={"max_steps": None, "epochs": 1, "eval_every": 2}, extra={"scheduler": rungs})
    assert main(["--space", str(space), "--dry-run"]) == 0
    assert "rungs on training data: 12 -> 24 -> 48 training segments per pair" in capsys.readouterr().out
    assert main(["--space", str(space)]) == 0
    study = study_of(space, "sizes")
    assert study.user_attrs["train_samples"] == ["12", "24", "48"]
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    for t in trials:
        run = Path(t.user_attrs["run_dir"])
        reached = t.user_attrs["train_samples"]
        trained = sorted(int(p.name.split("-")[1]) for p in run.glob("samples-*"))
        assert trained == [n for n in (12, 24, 48) if n <= int(reached)]  # nothing beyond its rung
        for n in trained:
            cfg = yaml.safe_load((run / f"samples-{n}" / "config.yaml").read_text())
            assert cfg["data"]["max_train_samples"] == n
        # intermediate values on the rung axis only (1, 2, 3; those with a defined objective), never
        # at a training step: up to the rung it reached
        assert all(s <= trained.index(int(reached)) + 1 for s in t.intermediate_values), t.intermediate_values
        if t.state == TrialState.COMPLETE:
            assert reached == "48" and t.intermediate_values[3] == t.value
        else:
            assert reached in ("12", "24")
    best = (tmp_path / "runs" / "best.yaml").read_text()
    assert "# Chosen on data-size rungs 12 -> 24 -> 48 training segments per pair; its value was measured at " \
           "the last, 48." in best
    assert "# Trained on 48 training segments per pair, as this config does" in best

    # a new study on another pair, in another SQLite file, starts from this one's best two
    other = space_file(tmp_path, data_root, cache_dir, trials=3, name="warm", extra={
        "datasets": {"pairs": ["ro-en"], "mode": "joint"}, "scheduler": {"name": "fifo"},
        "warm_start": {"top": 2}})
    source = f"sqlite:///{tmp_path / 'studies' / 'sizes'}.db::sizes"
    assert main(["--space", str(other), "--warm-start", source, "--out", str(tmp_path / "warm-runs")]) == 0
    done = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)[:2]
    assert f"warm start: {len(done)} configs from study 'sizes'" in capsys.readouterr().err
    warm = study_of(other, "warm").get_trials()
    assert [t.user_attrs["warm_start"]["trial"] for t in warm[:len(done)]] == [t.number for t in done]
    assert [t.params for t in warm[:len(done)]] == [t.params for t in done]
    assert not any("warm_start" in t.user_attrs for t in warm[len(done):])
    # a resumed study is not seeded again, and the dry run says so
    assert main(["--space", str(other), "--warm-start", source, "--dry-run"]) == 0
    assert ": not applied, the study exists already" in capsys.readouterr().out
    assert main(["--space", str(other), "--warm-start", source, "--out", str(tmp_path / "warm-runs"),
                 "--trials", "4"]) == 0
    assert sum("warm_start" in t.user_attrs for t in study_of(other, "warm").get_trials()) == len(done)


def test_the_cost_front_keeps_the_cheapest_config_of_each_quality():
    from reports.figures import cost_front

    points = [(10.0, 0.30, 0), (5.0, 0.20, 1), (20.0, 0.25, 2), (5.0, 0.10, 3), (30.0, 0.40, 4), (12.0, 0.30, 5)]
    assert cost_front(points, maximize=True) == [1, 0, 4]  # 2 is dearer and worse than 0; 5 ties 0, dearer
    assert cost_front([(s, -v, n) for s, v, n in points], maximize=False) == [1, 0, 4]


def test_a_data_size_study_draws_its_curves_per_rung(tmp_path, data_root, cache_dir):
    from reports.extract import extract
    from reports.figures import curves
    from tests.reports_helpers import add, config, new_study

    study = new_study(tmp_path)
    study.set_user_attr("train_samples", ["500", "1000", "all"])
    add(study, values=[0.4], cfg=config(data_root, cache_dir, lr=1e-3), curve={1: 0.2, 2: 0.3, 3: 0.4})
    axis = curves(extract(study, importances=False)).layout.xaxis
    assert axis.title.text == "training segments per pair (data-size rung)"
    assert list(axis.tickvals) == [1, 2, 3] and list(axis.ticktext) == ["500", "1000", "all"]
    study.set_user_attr("train_samples", [])  # a study on steps keeps its step axis
    assert curves(extract(study, importances=False)).layout.xaxis.title.text == "step"


def test_a_local_ray_keeps_the_workers_a_round_of_per_pair_trials_needs(monkeypatch, tmp_path, data_root, cache_dir):
    """Ray kills idle workers beyond one per CPU: a per_pair trial's pair tasks then start new
    processes (torch imported again) for every trial; the search's own Ray keeps enough."""
    import os

    from search.cluster import IDLE_WORKERS_ENV as LIMIT
    from search.cluster import prepare_env

    per_pair = load_space(space_file(tmp_path, data_root, cache_dir, extra={
        "datasets": {"pairs": ["en-de", "ro-en", "et-en"], "mode": "per_pair"}}))
    raced = load_space(space_file(tmp_path, data_root, cache_dir, extra={
        "datasets": {"pairs": ["en-de", "ro-en", "et-en"], "mode": "per_pair", "race": {}}}))
    assert per_pair.processes_per_trial == 4 and raced.processes_per_trial == 1  # a race trains in the trial
    assert load_space(space_file(tmp_path, data_root, cache_dir)).processes_per_trial == 1
    cpus = os.cpu_count() or 1
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k != LIMIT})
    prepare_env("127.0.0.1:6379", verbose=False, workers=cpus + 8)  # a cluster's own settings are its own
    assert LIMIT not in os.environ
    prepare_env(None, verbose=False, workers=cpus)  # Ray's default already keeps one per CPU
    assert LIMIT not in os.environ
    prepare_env(None, verbose=False, workers=cpus + 8)
    assert os.environ[LIMIT] == str(cpus + 8)
    os.environ[LIMIT] = "3"  # the user's own setting wins
    prepare_env(None, verbose=False, workers=cpus + 8)
    assert os.environ[LIMIT] == "3"

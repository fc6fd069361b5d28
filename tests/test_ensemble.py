"""Ensembles of trained runs: what the heads combine, the weights chosen on dev, and an ensemble
folder that `mtl evaluate` and `mtl predict` load like a run."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from mtl.cli import main as mtl_main
from mtl.config import config_from_dict
from tests.cli_probe import call
from tests.conftest import tiny_raw
from tests.own_data_fixtures import own_datasets, segments


def _train(data_root: Path, cache: Path, out: Path, seed: int, tables: dict, **sections) -> Path:
    from mtl.train import train

    raw = tiny_raw(data_root, cache, tasks={"da": {}, "hter": {}, "word_tags": {}, "source_tags": {}, "mlm": {}},
                   train={"seed": seed, "max_steps": 8, "eval_every": 4, "device": "cpu"},
                   data={"pairs": ["team", "pq"], "datasets": tables, "max_train_samples": None,
                         "max_eval_samples": None}, **sections)
    train(config_from_dict(raw, source=f"member {seed}"), out_dir=out)
    return out


@pytest.fixture(scope="module")
def members(tmp_path_factory, data_root, cache_dir) -> list[Path]:
    """Three small runs on two table datasets (dev: 24 and 16 segments of en-de)."""
    root = tmp_path_factory.mktemp("members")
    tables = own_datasets(root / "own", data_root)
    return [_train(data_root, cache_dir, root / "m0", 1, tables),
            _train(data_root, cache_dir, root / "m1", 2, tables, model={"vocab_size": 800, "num_layers": 1}),
            _train(data_root, cache_dir, root / "m2", 3, tables, model={"backbone": "roberta", "vocab_size": 700})]


@pytest.fixture(scope="module")
def ensemble(members, tmp_path_factory) -> tuple[Path, dict]:
    from mtl.ensemble_dir import build_ensemble

    out = tmp_path_factory.mktemp("ens") / "ensemble"
    return out, build_ensemble(members, out)


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _floats(cell: str) -> list[float]:
    return [float(x) for x in cell.split()]


def test_the_folder_holds_members_weights_metrics_and_wmt20_predictions(ensemble, members):
    out, _ = ensemble
    spec = json.loads((out / "ensemble.json").read_text())
    assert [(out / m).resolve() for m in spec["members"]] == [m.resolve() for m in members]
    for task in ("da", "hter", "word_tags", "source_tags"):
        weights = spec["weights"][task]
        assert len(weights) == 3 and sum(weights) == pytest.approx(1.0) and min(weights) >= 0
        assert spec["choice"][task]["chosen"] in ("plain", "selected")
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["metrics"]) == {"team", "pq"} and set(saved["members"]) == {"m0", "m1", "m2"}
    assert set(saved["metrics"]["team"]) == {"da", "hter", "word_tags", "source_tags"}  # mlm: no output to combine
    for pair, lp, rows in (("team", "en-de", 24), ("pq", "pq", 16)):
        folder = out / "predictions" / f"{pair}.dev"
        da = (folder / "da" / "predictions.txt").read_text().splitlines()
        assert len(da) == rows and da[0].split("\t")[:3] == [lp, "ensemble", "0"]
        assert (folder / "word" / "predictions_src.txt").is_file()
    assert (out / "predictions" / "team.dev" / "word" / "predictions_mt.txt").is_file()


def test_evaluate_recomputes_the_saved_metrics(ensemble):
    from mtl.ensemble import load_run
    from mtl.predict import score_run

    out, result = ensemble
    again = score_run(load_run(out), split="dev", pairs=["team", "pq"], max_samples=None, device="cpu")
    for pair in ("team", "pq"):
        for task, values in result["metrics"][pair].items():
            for metric, value in values.items():
                assert again["metrics"][pair][task][metric] == pytest.approx(value, abs=1e-9, nan_ok=True), \
                    (pair, task, metric)


def test_predict_averages_the_members_with_the_weights_of_ensemble_json(ensemble, members, data_root, tmp_path):
    out, _ = ensemble
    spec = json.loads((out / "ensemble.json").read_text())
    spec["members"] = [str(m.resolve()) for m in members]  # a folder of its own, with unequal weights
    spec["weights"].update(da=[0.5, 0.3, 0.2], hter=[0.0, 0.25, 0.75], word_tags=[0.6, 0.0, 0.4])
    out = tmp_path / "weighted"
    out.mkdir()
    (out / "ensemble.json").write_text(json.dumps(spec), encoding="utf-8")
    rows = segments(data_root, "ro-en", "dev", 30)
    new = tmp_path / "new.tsv"
    new.write_text("id\tsrc\tmt\n" + "".join(f"s{i}\t{' '.join(r['src'])}\t{' '.join(r['mt'])}\n"
                                             for i, r in enumerate(rows)), encoding="utf-8")
    for name, run in [("ens", out), *((m.name, m) for m in members)]:
        call(mtl_main, ["predict", "--run", str(run), "--input", str(new), "--out", str(tmp_path / name),
                        "--device", "cpu"]).check(code=0, says="30 segments predicted")
    ens = _tsv(tmp_path / "ens" / "predictions.tsv")
    each = [_tsv(tmp_path / m.name / "predictions.tsv") for m in members]
    assert [r["id"] for r in ens] == [f"s{i}" for i in range(30)]
    for i, row in enumerate(ens):
        for task in ("da", "hter"):
            w = spec["weights"][task]
            assert float(row[task]) == pytest.approx(sum(wk * float(m[i][task]) for wk, m in zip(w, each)), abs=1e-9)
        w = spec["weights"]["word_tags"]
        probs = [_floats(m[i]["mt_bad"]) for m in each]
        for j, p in enumerate(_floats(row["mt_bad"])):
            seen = [(wk, q[j]) for wk, q in zip(w, probs) if not math.isnan(q[j]) and wk > 0]
            if not seen:
                assert math.isnan(p)
                continue
            assert p == pytest.approx(sum(wk * q for wk, q in seen) / sum(wk for wk, _ in seen), abs=1e-9)
            assert row["mt_tags"].split()[j] == ("BAD" if p > 0.5 else "OK")


def test_a_run_is_an_ensemble_of_one(members, tmp_path):
    from mtl.ensemble_dir import build_ensemble

    one = build_ensemble(members[:1], tmp_path / "one")
    own = json.loads((members[0] / "metrics.json").read_text())
    assert one["choice"] == {} and one["weights"]["da"] == [1.0]
    for pair in ("team", "pq"):  # the run's own metrics.json, on the same dev rows
        assert one["metrics"][pair]["da"]["pearson"] == pytest.approx(own["metrics"][pair]["da"]["pearson"], abs=1e-6)
        assert one["metrics"][pair]["source_tags"]["mcc"] == pytest.approx(own["metrics"][pair]["source_tags"]["mcc"],
                                                                           abs=1e-9, nan_ok=True)


def test_weights_are_chosen_on_one_half_and_kept_only_if_they_win_on_the_other(members, data_root):
    from mtl.ensemble import Ensemble, choose_weights, load_run
    from mtl.predict import dev_outputs

    ens = Ensemble.of([load_run(m).members[0] for m in members])
    dev = [dev_outputs(ens, pair, "dev", max_samples=None, root=None, device="cpu") for pair in ("team", "pq")]
    report = choose_weights(ens, dev, seed=0)
    for task, row in report.items():
        assert abs(sum(row["selected_weights"]) - 1) < 1e-9
        wanted = row["selected_weights"] if row["held_out_selected"] > row["held_out_plain"] else [1 / 3] * 3
        if row["metric"].endswith(("mae", "rmse")):  # lower is better
            wanted = row["selected_weights"] if row["held_out_selected"] < row["held_out_plain"] else [1 / 3] * 3
        assert ens.weights[task] == pytest.approx(wanted), task


def test_a_broken_ensemble_folder_is_one_message(ensemble, tmp_path):
    out, _ = ensemble
    spec = json.loads((out / "ensemble.json").read_text())
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "ensemble.json").write_text("{\"members\": [", encoding="utf-8")
    call(mtl_main, ["evaluate", "--run", str(broken)]).check(code=2, says=r"ensemble.json: not an ensemble file")
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "ensemble.json").write_text(json.dumps({**spec, "members": ["../nowhere"]}), encoding="utf-8")
    call(mtl_main, ["evaluate", "--run", str(gone)]).check(code=2, says=r"nowhere: no such folder")


def test_mtl_ensemble_writes_a_folder_and_refuses_to_clobber(members, tmp_path):
    out = tmp_path / "ab"
    answer = call(mtl_main, ["ensemble", "--runs", str(members[0]), str(members[1]), "--out", str(out),
                             "--device", "cpu"])
    answer.check(code=0, says="ensemble written to")
    assert json.loads(answer.out)["objective"] == pytest.approx(json.loads((out / "metrics.json").read_text())["objective"])
    before = (out / "ensemble.json").read_bytes()
    call(mtl_main, ["ensemble", "--runs", str(members[0]), str(members[2]), "--out", str(out)]).check(
        code=2, says=r"already holds an ensemble; pass --overwrite")
    call(mtl_main, ["ensemble", "--runs", str(members[0]), "--out", str(tmp_path / "one")]).check(
        code=2, says=r"needs at least 2 runs, got 1")
    call(mtl_main, ["ensemble", "--runs", str(members[0]), str(members[1]), "--out", str(members[2])]).check(
        code=2, says=r"holds a run directory")
    call(mtl_main, ["ensemble", "--runs", str(members[0]), str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) \
        .check(code=2, says=r"nope: no such folder")
    other = _train_elsewhere(tmp_path)
    call(mtl_main, ["ensemble", "--runs", str(members[0]), str(other), "--out", str(tmp_path / "y")]).check(
        code=2, says=r"must be trained on the same datasets; .*m0: pq, team; .*other: en-de")
    assert (out / "ensemble.json").read_bytes() == before


def _train_elsewhere(tmp_path: Path) -> Path:
    """A run on MLQE-PE en-de (the members train on two tables)."""
    from mtl.train import train
    from tests.conftest import DATA_ROOT

    raw = tiny_raw(DATA_ROOT, tmp_path / "cache", train={"max_steps": 2, "eval_every": 2, "device": "cpu"},
                   data={"max_train_samples": 16, "max_eval_samples": 8})
    train(config_from_dict(raw, source="other"), out_dir=tmp_path / "other")
    return tmp_path / "other"

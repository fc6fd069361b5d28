"""From a search to a model to ship: `search.run --finalize`, `python -m search.finalize`, resumed
after a kill, and the ensemble it writes used by `mtl evaluate` and `mtl predict`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mtl.cli import main as mtl_main
from search.finalize import main as finalize_main
from tests.cli_probe import call
from tests.own_data_fixtures import own_datasets, segments
from tests.search_fixtures import REPO, ray_env, space_file, study_of
from tests.servers import stop_ray

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def searched(tmp_path_factory, data_root, cache_dir) -> tuple[Path, Path, str]:
    """A 3-trial search over two small table datasets, finalized: top 2 configs x 2 seeds."""
    from search.run import main

    tmp = tmp_path_factory.mktemp("finalize")
    space = space_file(tmp, data_root, cache_dir, trials=3, name="fin",
                       extra={"datasets": {"pairs": ["team", "vendor"], "mode": "joint"},
                              "scheduler": {"name": "fifo"}})
    raw = yaml.safe_load(space.read_text())
    raw["base"]["data"]["datasets"] = own_datasets(tmp / "own", data_root)
    space.write_text(yaml.safe_dump(raw))
    assert main(["--space", str(space), "--finalize", "2", "--finalize-seeds", "2"]) == 0
    return tmp, space, f"sqlite:///{tmp / 'studies' / 'fin'}.db"


def test_search_finalize_retrains_the_top_configs_on_all_the_data_with_two_seeds(searched):
    tmp, space, _ = searched
    study = study_of(space, "fin")
    ranked = sorted((t for t in study.get_trials() if t.state.name == "COMPLETE"), key=lambda t: -t.values[0])
    final = tmp / "runs" / "final"
    names = sorted(p.name for p in (final / "members").iterdir())
    assert names == sorted(f"r{r}-t{t.number}-s{s}" for r, t in enumerate(ranked[:2], 1) for s in (7, 8))
    for name in names:
        run = final / "members" / name
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        assert cfg["data"]["max_train_samples"] is None and cfg["data"]["max_eval_samples"] is None
        assert cfg["train"]["seed"] == int(name.rsplit("-s", 1)[1])
        metrics = json.loads((run / "metrics.json").read_text())
        assert set(metrics["metrics"]) == {"team", "vendor"}
    trial = ranked[0]  # the member with the trial's own seed trains the trial's config, on all the data
    member = yaml.safe_load((final / "members" / f"r1-t{trial.number}-s7" / "config.yaml").read_text())
    assert member["train"]["lr"] == pytest.approx(trial.params["train.lr"])
    record = study.user_attrs["finalized"][str(final)]
    assert set(record["members"]) == set(names) and record["train_samples"] is None
    spec = json.loads((final / "ensemble" / "ensemble.json").read_text())
    assert [Path(m).name for m in spec["members"]] == [n for r in (1, 2) for n in names if n.startswith(f"r{r}-")]
    assert record["ensemble"]["objective"] == pytest.approx(json.loads(
        (final / "ensemble" / "metrics.json").read_text())["objective"])


def test_the_ensemble_evaluates_and_predicts_like_a_run(searched, data_root, tmp_path):
    tmp, _, _ = searched
    ensemble = tmp / "runs" / "final" / "ensemble"
    answer = call(mtl_main, ["evaluate", "--run", str(ensemble), "--split", "dev", "--device", "cpu"])
    answer.check(code=0, says="")
    saved = json.loads((ensemble / "metrics.json").read_text())
    assert json.loads(answer.out)["objective"] == pytest.approx(saved["objective"])
    new = tmp_path / "new.tsv"
    new.write_text("src\tmt\n" + "".join(f"{' '.join(r['src'])}\t{' '.join(r['mt'])}\n"
                                         for r in segments(data_root, "en-de", "dev", 12)), encoding="utf-8")
    call(mtl_main, ["predict", "--run", str(ensemble), "--input", str(new), "--out", str(tmp_path / "scores")]) \
        .check(code=0, says="12 segments predicted")
    lines = (tmp_path / "scores" / "predictions.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:2] == ["id", "da"] and len(lines) == 13


def test_a_rerun_keeps_finished_members_and_a_kill_resumes(searched):
    tmp, _, storage = searched
    out = tmp / "runs" / "again"
    cmd = [sys.executable, "-m", "search.finalize", "--storage", storage, "--top", "2", "--seeds", "1",
           "--train-samples", "40", "--out", str(out)]
    with open(tmp / "killed.log", "w") as log:
        first = subprocess.Popen(cmd, cwd=REPO, env=ray_env(), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    deadline = time.monotonic() + 240
    while not list(out.glob("members/*/metrics.json")):
        assert first.poll() is None, (tmp / "killed.log").read_text()
        assert time.monotonic() < deadline, "no member finished in 240 s"
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and every Ray process it started
    first.wait()
    stop_ray(os.environ["RAY_TMPDIR"])
    kept = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("members/*/metrics.json")}
    assert not (out / "ensemble" / "ensemble.json").exists()

    second = subprocess.run(cmd, cwd=REPO, env=ray_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "ensemble beats it" in second.stdout or "does not beat it" in second.stdout
    for path, (content, mtime) in kept.items():  # a finished member is not trained again
        assert path.read_bytes() == content and path.stat().st_mtime_ns == mtime
    assert len(list(out.glob("members/*/metrics.json"))) == 2 and (out / "ensemble" / "ensemble.json").is_file()
    for run in out.glob("members/*"):
        assert yaml.safe_load((run / "config.yaml").read_text())["data"]["max_train_samples"] == 40

    # another --train-samples into the same folder: refused before anything starts
    answer = call(finalize_main, [*cmd[3:-4], "--train-samples", "30", "--out", str(out)])
    answer.check(code=2, says=r"members r1-t\d+-s7, r2-t\d+-s7 hold runs of other configs")


@pytest.mark.parametrize(("argv", "says"), [
    (["--top", "0"], r"--top and --seeds must be 1 or more, got 0 and 2"),
    (["--train-samples", "many"], r"--train-samples many: expected a positive number of segments, or all"),
    (["--study", "nope"], r"nope"),
    (["--cpus-per-member", "0"], r"--cpus-per-member must be above 0"),
])
def test_finalize_mistakes_are_one_line(searched, argv, says):
    tmp, _, storage = searched
    call(finalize_main, ["--storage", storage, "--out", str(tmp / "x"), *argv]).check(code=2, says=says)


def test_finalize_refuses_an_out_that_is_a_file(searched):
    tmp, _, storage = searched
    (tmp / "afile").write_text("")
    call(finalize_main, ["--storage", storage, "--out", str(tmp / "afile")]).check(code=2, says=r"afile: is a file")


def test_the_report_says_what_finalizing_bought(searched):
    import html

    from reports.__main__ import main as report

    tmp, space, storage = searched
    assert report(["build", "--storage", storage, "--out", str(tmp / "report"), "--bootstrap", "50"]) == 0
    page = (tmp / "report" / "index.html").read_text()
    final = html.unescape(page[page.index('<h2 id="final">'):page.index('<h2 id="rankings">')])
    latest, record = list(study_of(space, "fin").user_attrs["finalized"].items())[-1]  # the section shows it
    seeds = len(record["members"]) // len({m["trial"] for m in record["members"].values()})
    assert f"{latest}: the top configs retrained" in final and "finalized objective" in final
    assert "<b>ensemble</b>" in final and (" ± " in final) == (seeds > 1)
    assert "team da.pearson: the ensemble " in final and " the best single member r" in final
    assert "trained on the search's slice" in final
    assert ("retrained on all the data (mean of 2 seeds)" if seeds > 1 else "retrained on all the data (one seed)") \
        in final

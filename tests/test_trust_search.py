"""`python -m search.run` as a hostile user tries it: every mistake answered before anything is
written or started (one message naming the file, key or flag, exit 2, no traceback, in seconds),
and a study is never mixed with another space's trials."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from search.run import main
from tests.cli_probe import call, snapshot
from tests.search_fixtures import space_file


@dataclass
class Ctx:
    tmp: Path
    data: Path
    cache: Path

    def space(self, name: str = "s", *, base: dict | None = None, **top: Any) -> str:
        """A tiny valid space file, with ``base`` keys (dotted) and top-level blocks replaced."""
        path = space_file(self.tmp, self.data, self.cache, name=name, trials=2)
        raw = yaml.safe_load(path.read_text())
        for key, value in (base or {}).items():
            node = raw["base"]
            *parents, last = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        raw.update(top)
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        return str(path)

    def text(self, name: str, text: str | bytes) -> str:
        path = self.tmp / name
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)  # type: ignore[operator]
        return str(path)

    def file(self, name: str = "a-file") -> Path:
        path = self.tmp / name
        path.write_text("x")
        return path


@pytest.fixture
def ctx(tmp_path: Path, data_root: Path, cache_dir: Path) -> Ctx:
    """A folder with an existing study (studies/s.db, made by the default space) no mistake may touch."""
    ctx = Ctx(tmp_path, data_root, cache_dir)
    _open(ctx.space("existing"))
    return ctx


def _locked(ctx: Ctx) -> str:
    db = ctx.tmp / "locked.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="other")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")  # held (as by another process) until the case is answered
    ctx.__dict__["conn"] = conn
    return f"sqlite:///{db}"


def _old_schema(ctx: Ctx) -> str:
    db = ctx.tmp / "old.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    with sqlite3.connect(db) as conn:
        conn.execute("update alembic_version set version_num='v3.0.0.d'")
    return f"sqlite:///{db}"


Case = tuple[str, Callable[[Ctx], list[str]], str]
CASES: list[Case] = [
    ("space-missing", lambda c: ["--space", f"{c.tmp}/nope.yaml"], r"nope\.yaml: no such space file"),
    ("space-empty", lambda c: ["--space", c.text("e.yaml", "# nothing\n")], r"e\.yaml: the file is empty"),
    ("space-not-utf8", lambda c: ["--space", c.text("l.yaml", b"search: {}\n# caf\xe9\n")], r"l\.yaml: line 2: not UTF-8"),
    ("space-duplicate-key", lambda c: ["--space", c.text("d.yaml", "search: {}\nsearch: {}\n")],
     r"d\.yaml: .*key 'search' is written twice"),
    ("space-a-list", lambda c: ["--space", c.text("l.yaml", "- 1\n")], r"the top level must be a mapping"),
    ("unknown-backbone", lambda c: ["--space", c.space(base={"model.backbone": "bart-large-xyz"}), "--dry-run"],
     r"base: model\.backbone: unknown 'bart-large-xyz'"),
    ("objective-misspelt", lambda c: ["--space", c.space(objective={"metrics": ["da.pearsn"]}), "--dry-run"],
     r"objective\.metrics\[0\]: task 'da' reports no metric 'pearsn'; did you mean 'pearson'"),
    ("objective-task-off", lambda c: ["--space", c.space(objective={"metrics": ["post_edit.chrf"]}), "--dry-run"],
     r"objective\.metrics\[0\]: task 'post_edit' is not enabled"),
    ("pair-not-in-data", lambda c: ["--space", c.space(datasets={"pairs": ["zz-yy"]}), "--dry-run"],
     r"datasets\.pairs\[0\]: no tarball for zz-yy train"),
    ("pairs-in-two-places", lambda c: ["--space", c.space(base={"data.pairs": ["ro-en"]}), "--dry-run"],
     r"datasets\.pairs: \['en-de'\] disagrees with base\.data\.pairs \['ro-en'\]"),
    ("backbone-path-missing", lambda c: ["--space", c.space(), "--backbone-path", f"{c.tmp}/enc", "--dry-run"],
     r"base\.model\.pretrained \(--backbone-path\): .*no such folder"),
    ("backbone-path-a-file", lambda c: ["--space", c.space(), "--backbone-path", str(c.file()), "--dry-run"],
     r"base\.model\.pretrained \(--backbone-path\): .*is a file"),
    ("data-missing", lambda c: ["--space", c.space(), "--data", f"{c.tmp}/nodata", "--dry-run"],
     r"run\.data \(--data\): .*nodata: not a directory"),
    ("storage-not-a-url", lambda c: ["--space", c.space(), "--storage", "notadb://x/y"],
     r"--storage notadb://x/y: SQLAlchemy knows no database 'notadb'"),
    ("storage-garbage", lambda c: ["--space", c.space(), "--storage", "not a url"], r"not a database URL"),
    ("storage-no-driver", lambda c: ["--space", c.space(), "--storage", "mysql://u@localhost/db"],
     r"--storage mysql://u@localhost/db: the mysql driver is not installed: pip install pymysql"),
    ("storage-under-a-file", lambda c: ["--space", c.space(), "--storage", f"sqlite:///{c.file()}/s.db"],
     r"a-file is a file, expected the folder of the SQLite file"),
    ("storage-a-folder", lambda c: ["--space", c.space(), "--storage", f"sqlite:///{c.tmp}"],
     r"is a folder, expected a SQLite file"),
    ("storage-read-only", lambda c: ["--space", c.space(), "--storage", _read_only(c)], r"read-only"),
    ("storage-old-schema", lambda c: ["--space", c.space(), "--storage", _old_schema(c), "--study", "s"],
     r"set up by another Optuna version; upgrade it with: optuna storage upgrade"),
    ("storage-locked", lambda c: ["--space", c.space(), "--storage", _locked(c)], r"locked by another process"),
    ("out-under-a-file", lambda c: ["--space", c.space(), "--out", f"{c.file()}/runs", "--dry-run"],
     r"--out .*a-file is a file"),
    ("address-nothing-there", lambda c: ["--space", c.space(), "--address", "127.0.0.1:1", "--dry-run"],
     r"--address 127\.0\.0\.1:1: no Ray head answers there"),
    ("address-no-port", lambda c: ["--space", c.space(), "--address", "headnode", "--dry-run"],
     r"--address headnode: expected host:port"),
    ("cpus-more-than-the-machine", lambda c: ["--space", c.space(), "--cpus-per-trial", "64", "--dry-run"],
     r"--cpus-per-trial \(run\.cpus_per_trial\) 64: this machine .* has \d+ CPUs in all"),
    ("gpus-on-a-cpu-machine", lambda c: ["--space", c.space(), "--gpus-per-trial", "1", "--dry-run"],
     r"--gpus-per-trial \(run\.gpus_per_trial\) 1: this machine .* has 0 GPUs in all"),
    ("cuda-without-gpus", lambda c: ["--space", c.space(base={"train.device": "cuda"}), "--dry-run"],
     r"base\.train\.device: cuda, but --gpus-per-trial is 0"),
    ("trials-zero", lambda c: ["--space", c.space(), "--trials", "0"], r"run\.trials: must be >= 1, got 0 \(from the command line\)"),
    ("heartbeat-zero", lambda c: ["--space", c.space(), "--heartbeat", "0"], r"run\.heartbeat: must be >= 1 second"),
    ("time-budget-negative", lambda c: ["--space", c.space(), "--time-budget", "-1"], r"run\.time_budget: must be > 0"),
    ("max-concurrent-zero", lambda c: ["--space", c.space(), "--max-concurrent", "0"], r"run\.max_concurrent: must be >= 1"),
    ("cpus-zero", lambda c: ["--space", c.space(), "--cpus-per-trial", "0"], r"run\.cpus_per_trial: must be > 0"),
    ("seed-not-a-number", lambda c: ["--space", c.space(), "--seed", "abc"], r"--seed: invalid int value: 'abc'"),
    ("run-block-typo", lambda c: ["--space", c.space(run={"trails": 3})], r"run\.trails: unknown key for run; did you mean 'trials'"),
    ("weighting-choice-misspelt", lambda c: ["--space", c.space(search={"weighting": {"type": "categorical",
                                                                                    "choices": ["fixed", "famoo"]}})],
     r"search\.weighting: unknown 'famoo'; did you mean 'famo'"),
    ("enqueue-outside", lambda c: ["--space", c.space(enqueue=[{"train.lr": 5.0}])],
     r"enqueue\[0\]\.train\.lr: must be a float in \[0\.0001, 0\.03\] \(log\), got 5\.0"),
    ("weights-with-a-learned-strategy", lambda c: ["--space", c.space(weights={}, base={"weighting": "famo"},
                                                                        search={"train.lr": {"type": "float", "low": 1e-4,
                                                                                             "high": 1e-2}})],
     r"weights: has no effect with base\.weighting 'famo'"),
]


def _read_only(ctx: Ctx) -> str:
    db = ctx.tmp / "ro.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="other")  # the search creates its own study
    return f"sqlite:///file:{db}?mode=ro&uri=true"


@pytest.mark.parametrize("name, argv, says", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_answered_before_anything_runs(ctx, name, argv, says):
    existing = snapshot(ctx.tmp / "studies")
    args = argv(ctx)
    answer = call(main, args, cwd=ctx.tmp)
    lock = ctx.__dict__.pop("conn", None)
    if lock is not None:
        lock.close()
    answer.check(code=2, says=says)
    assert not (ctx.tmp / "runs").exists(), "a trial's folder was made"
    assert snapshot(ctx.tmp / "studies") == existing, "the existing study changed"


# --- nothing mixed ----------------------------------------------------------------------------------


def _open(path: str, **kw: Any) -> None:
    from search.space import load_space
    from search.study import Study

    space = load_space(path)
    storage = f"sqlite:///{Path(path).parent / 'studies' / 's.db'}"  # every space of a test opens study s here
    Study.open(space, storage=storage, name="s", out=space.run.out, data_root=space.run.data,
               budget=space.run.trials, max_failures_in_a_row=5, **kw).close()


def test_a_study_refuses_another_space_before_anything_is_written(ctx):
    first = ctx.space("existing")
    db = ctx.tmp / "studies" / "s.db"
    before = snapshot(db)
    edited = ctx.space("edited", search={"train.lr": {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}},
                       base={"train.max_steps": 10})
    answer = call(main, ["--space", edited, "--study", "s", "--storage", f"sqlite:///{db}"], cwd=ctx.tmp)
    answer.check(code=2, says=r"study 's' .* was created by another space .*differs in: base\.train\.max_steps, "
                              r"search\.train\.lr, search\.weighting\. Nothing was written.*--allow-space-change")
    assert snapshot(db) == before
    # the same space again is no change at all
    _open(first)


def test_continuing_on_purpose_records_the_change_and_drops_queued_values_outside(ctx, tmp_path):
    (tmp_path / "studies" / "s.db").unlink()  # a study of its own, with a queued config
    first = ctx.space(enqueue=[{"train.lr": 2e-2}])
    _open(first)
    narrower = ctx.space("narrower", search={"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                                 "weighting": {"type": "categorical", "choices": ["fixed", "uncertainty"]}},
                         enqueue=[{"train.lr": 1e-3}])
    _open(narrower, allow_space_change=True)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{ctx.tmp / 'studies' / 's.db'}")
    changes = study.user_attrs["space_changes"]
    assert len(changes) == 1 and changes[0]["keys"] == ["search.train.lr"]
    queued = study.get_trials()[0]
    assert queued.state.name == "FAIL" and "outside the edited space: train.lr=0.02" in queued.user_attrs["fail_reason"]


def test_changed_choices_cannot_continue_even_on_purpose(ctx):
    other = ctx.space("other", search={"train.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                              "weighting": {"type": "categorical", "choices": ["fixed", "famo"]}})
    answer = call(main, ["--space", other, "--study", "s", "--storage", f"sqlite:///{ctx.tmp / 'studies' / 's.db'}",
                         "--allow-space-change"], cwd=ctx.tmp)
    answer.check(code=2, says=r"search\.weighting: .*Optuna cannot continue study 's' with it: pick a new --study")


def test_a_missing_database_driver_names_the_extra_that_installs_it():
    from reports.storage import storage_error

    error = storage_error("postgresql://user:secret@dbhost/studies", ModuleNotFoundError("No module named 'psycopg'"))
    assert str(error) == ("--storage postgresql://user:***@dbhost/studies: the postgresql driver is not installed: "
                          "pip install -e '.[postgres]'")


@pytest.mark.parametrize("direction, worst", [("maximize", float("-inf")), ("minimize", float("inf"))])
def test_an_undefined_objective_ranks_last_for_the_schedulers(direction, worst):
    """An evaluation whose objective the predictions leave undefined (every tag OK: MCC NaN) is
    the worst score Ray's schedulers see: NaN would pass every ASHA cutoff."""
    import math

    from reports.record import TrialConfigs
    from search.plan import TrialPlan
    from search.trial import _result

    plan = TrialPlan(number=0, run_dir="r", configs=TrialConfigs(mode="joint", configs={"all": {}}),
                     metrics=(("word_tags.all_mcc", direction),), aggregator="mean")
    undefined = {"en-de": {"word_tags": {"all_mcc": math.nan}}}
    result = _result(4, undefined, plan, {"en-de": {}}, final=False, started=0.0)
    assert result["score"] == worst and math.isnan(result["scores"][0])
    defined = _result(4, {"en-de": {"word_tags": {"all_mcc": 0.25}}}, plan, {"en-de": {}}, final=False, started=0.0)
    assert defined["score"] == 0.25


def test_a_trial_stopped_at_an_undefined_objective_is_pruned_not_failed(tmp_path, data_root, cache_dir):
    """Early evaluations often predict every tag OK (MCC undefined): the scheduler stops such a
    trial as the worst, and the study records it PRUNED with the reason, not as a failure that
    counts towards max_failures_in_a_row (the quickstart had 3 of 8 trials FAIL so). An
    undefined objective at the end of training is still a failure."""
    import math

    from optuna.trial import TrialState

    from search.space import load_space
    from search.study import Study

    space = load_space(space_file(tmp_path, data_root, cache_dir))
    study = Study.open(space, storage=space.run.storage, name="u", out=tmp_path / "runs",
                       data_root=str(data_root), budget=4, max_failures_in_a_row=1)
    try:
        stopped, ended = study.ask(), study.ask()
        assert stopped is not None and ended is not None
        assert study.finish(stopped.number, {"scores": [math.nan], "step": 2, "seconds": 1.0}) == "PRUNED"
        assert study.stop_reason() is None  # no failure counted
        assert study.finish(ended.number, {"scores": [math.nan], "step": 8, "final": True}) == "FAIL"
    finally:
        study.close()
    trials = optuna.load_study(study_name="u", storage=space.run.storage).get_trials()
    assert trials[stopped.number].state == TrialState.PRUNED
    assert "objective is not finite at step 2" in trials[stopped.number].user_attrs["pruned_reason"]
    assert trials[ended.number].state == TrialState.FAIL

"""The search end to end: a real local Ray, a real SQLite study, tiny models, real data slices."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.trial import TrialState

from tests.search_fixtures import REPO, ray_env, space_file, study_of
from tests.servers import stop_ray

pytestmark = pytest.mark.ray


def test_a_search_prunes_and_records_everything(tmp_path, data_root, cache_dir, capsys):
    from search.run import main

    # a warm start that cannot learn (lr tiny) sits below the others at the first rung; one
    # trial at a time, so that ASHA sees the same values in the same order on every run
    space = space_file(tmp_path, data_root, cache_dir, extra={"enqueue": [{"train.lr": 3e-2}, {"train.lr": 1e-4}]})
    assert main(["--space", str(space), "--max-concurrent", "1"]) == 0
    out = capsys.readouterr()
    study = study_of(space)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 6 and set(states) <= {TrialState.COMPLETE, TrialState.PRUNED}, states
    assert TrialState.PRUNED in states, [(t.number, t.state, t.intermediate_values) for t in trials]
    for t in trials:
        assert t.intermediate_values, t.number  # learning curves for optuna-dashboard
        assert set(t.user_attrs) >= {"values", "config", "run_dir", "metrics", "pair_scores", "seconds", "step"}
        assert Path(t.user_attrs["run_dir"], "history.jsonl").exists()
        assert t.user_attrs["metrics"]["en-de"]["da"]["pearson"] == t.user_attrs["metrics"]["en-de"]["da"]["pearson"]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    for t in complete:  # the value is the aggregate of the per-pair scores of the checkpoint kept
        assert t.value == pytest.approx(t.user_attrs["pair_scores"]["objective"]["en-de"])
        # one point per evaluation whose objective is defined (high lr can collapse the tags to all
        # OK: MCC, and so the objective, is undefined there and ranks last)
        history = [json.loads(line) for line in Path(t.user_attrs["run_dir"], "history.jsonl").read_text().splitlines()]
        defined = [h["step"] for h in history if "eval" in h and math.isfinite(h["objective"])]
        assert sorted(t.intermediate_values) == defined and 8 in [h["step"] for h in history if "eval" in h]
        assert t.value == pytest.approx(max(t.intermediate_values.values()))  # the best one is kept
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert all(t.user_attrs["step"] < 8 for t in pruned)
    assert trials[0].params["train.lr"] == pytest.approx(3e-2)  # enqueued configs first
    # best.yaml: a complete trainer config that retrains with `mtl train`
    best = tmp_path / "runs" / "best.yaml"
    assert best.exists() and "best config" in out.out
    from mtl.config import load_config

    cfg = load_config(best)
    winner = max(complete, key=lambda t: t.value)
    assert winner.user_attrs["config"]["mode"] == "joint"  # one shape: mode and configs
    assert cfg.train.lr == pytest.approx(winner.user_attrs["config"]["configs"]["all"]["train"]["lr"])
    assert "PRUNED" in out.out and "finished" in out.err  # summary table and progress line


def test_nan_trial_fails_with_its_reason_and_the_search_goes_on(tmp_path, data_root, cache_dir):
    from search.run import main

    # the first trial diverges (lr 1e30, no clipping): the trainer's own check finds a NaN loss
    space = space_file(tmp_path, data_root, cache_dir, trials=3, train={"max_grad_norm": None},
                   extra={"search": {"train.lr": {"type": "categorical", "choices": [1e30, 3e-3, 1e-3]}},
                          "weights": None, "scheduler": {"name": "fifo"},
                          "enqueue": [{"train.lr": 1e30}, {"train.lr": 3e-3}, {"train.lr": 1e-3}]})
    assert main(["--space", str(space)]) == 0
    trials = study_of(space).get_trials()
    assert len(trials) == 3
    failed = trials[0]
    assert failed.state == TrialState.FAIL
    assert "TrainingDiverged" in failed.user_attrs["fail_reason"], failed.user_attrs
    assert "loss is" in failed.user_attrs["fail_reason"] and "Traceback" in failed.user_attrs["fail_traceback"]
    assert all(t.state == TrialState.COMPLETE for t in trials[1:]), [t.user_attrs.get("fail_reason") for t in trials]


def test_too_many_failures_in_a_row_stop_the_search(tmp_path, data_root, cache_dir, capsys):
    from search.run import main

    space = space_file(tmp_path, data_root, cache_dir, trials=6, name="failing", train={"max_grad_norm": None},
                   extra={"search": {"train.lr": {"type": "categorical", "choices": [1e30]}}, "weights": None,
                          "scheduler": {"name": "fifo"}})
    raw = yaml.safe_load(space.read_text())
    raw["run"].update(max_failures_in_a_row=2, max_concurrent=1)
    space.write_text(yaml.safe_dump(raw))
    assert main(["--space", str(space)]) == 1
    assert "2 trials failed in a row (limit 2): stopping" in capsys.readouterr().err
    trials = study_of(space, "failing").get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL] * 2


def test_per_pair_mode_trains_each_pair_as_its_own_ray_task(tmp_path, data_root, cache_dir):
    from search.run import main

    # the third trial diverges: a pair's task fails, and the trial is FAIL with that pair's reason
    space = space_file(tmp_path, data_root, cache_dir, trials=3, name="pp", train={"max_grad_norm": None},
                   extra={"datasets": {"pairs": ["en-de", "ro-en"], "mode": "per_pair"},
                          "search": {"train.lr": {"type": "categorical", "choices": [1e-3, 3e-3, 1e30]}},
                          "weights": None, "enqueue": [{"train.lr": v} for v in (1e-3, 3e-3, 1e30)],
                          "scheduler": {"name": "fifo"}, "objective": {"metrics": ["da.pearson"], "aggregator": "worst"}})
    assert main(["--space", str(space), "--cpus-per-trial", "2", "--max-concurrent", "1"]) == 0
    trials = study_of(space, "pp").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]
    assert "TrainingDiverged" in trials[2].user_attrs["fail_reason"]
    for t in trials[:2]:
        run = Path(t.user_attrs["run_dir"])
        for pair in ("en-de", "ro-en"):  # one run directory per pair, each trained on its pair only
            assert json.loads((run / pair / "metrics.json").read_text())["metrics"].keys() == {pair}
        scores = t.user_attrs["pair_scores"]["da.pearson"]
        assert set(scores) == {"en-de", "ro-en"} and t.value == pytest.approx(min(scores.values()))
        assert sorted(t.intermediate_values) == [2, 4, 6, 8]
    from mtl.config import load_config

    assert load_config(tmp_path / "runs" / "best.yaml").data.pairs == ("en-de", "ro-en")


def test_several_objectives_make_a_pareto_study(tmp_path, data_root, cache_dir):
    from search.run import main

    space = space_file(tmp_path, data_root, cache_dir, trials=2, name="mo",
                   extra={"objective": {"metrics": ["da.pearson", {"metric": "da.mae", "direction": "minimize"}]},
                          "scheduler": None, "sampler": None})
    assert main(["--space", str(space)]) == 0
    study = study_of(space, "mo")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    for t in study.get_trials():
        assert t.state == TrialState.COMPLETE and len(t.values) == 2
        assert t.values[1] == pytest.approx(t.user_attrs["metrics"]["en-de"]["da"]["mae"])
    assert (tmp_path / "runs" / "best.yaml").exists()
    # the same study name with other objectives is refused, not silently reused
    raw = yaml.safe_load(space.read_text())
    raw["objective"] = {"metrics": ["da.pearson"]}
    space.write_text(yaml.safe_dump(raw))
    with pytest.raises(SystemExit, match="2"):
        sys.exit(main(["--space", str(space)]))


@pytest.mark.slow
def test_time_budget_interrupts_and_the_next_run_resumes_from_checkpoints(tmp_path, data_root, cache_dir, capsys):
    from search.run import main

    def steps(run_dir: str) -> list[int]:
        lines = Path(run_dir, "history.jsonl").read_text().splitlines()
        return [json.loads(line)["step"] for line in lines if "loss" in json.loads(line)]

    # runs far longer than the budget on any machine; a checkpoint every 5 steps
    space = space_file(tmp_path, data_root, cache_dir, trials=2, name="budget", extra={"scheduler": {"name": "fifo"}},
                   train={"max_steps": 100000, "eval_every": 5})
    main(["--space", str(space), "--time-budget", "20"])
    assert "the --time-budget of 20 s ran out with 2 of 2 trials to go" in capsys.readouterr().err
    cut = [t for t in study_of(space, "budget").get_trials() if t.user_attrs.get("interrupted")]
    assert len(cut) == 2 and all("--time-budget ran out" in t.user_attrs["fail_reason"] for t in cut)
    reached = {t.number: max(steps(t.user_attrs["run_dir"])) for t in cut}
    assert all(step >= 5 for step in reached.values()), reached  # each has a checkpoint to resume from

    main(["--space", str(space), "--time-budget", "20"])
    trials = study_of(space, "budget").get_trials()
    for t in cut:  # the same config again, in the same folder, continuing its one learning curve
        retry = next(r for r in trials if r.user_attrs.get("retry_of") == t.number)
        assert retry.params == t.params and retry.user_attrs["run_dir"] == t.user_attrs["run_dir"]
        curve = steps(t.user_attrs["run_dir"])
        assert curve == list(range(1, len(curve) + 1)) and len(curve) > reached[t.number]


def test_a_resumed_asha_prunes_against_the_trials_already_finished(tmp_path, data_root, cache_dir):
    from optuna.distributions import FloatDistribution

    from mtl.registry import load_object
    from search.schedulers import SCHEDULERS
    from search.space import load_space
    from search.study import Study
    from search.tune import _seed_rungs

    space = load_space(space_file(tmp_path, data_root, cache_dir))
    study = Study.open(space, storage=space.run.storage, name="tiny", out=tmp_path / "runs",
                       data_root=str(data_root), budget=6, max_failures_in_a_row=3)
    study.close()
    for value in (0.1, 0.5):
        study.optuna.add_trial(optuna.trial.create_trial(
            params={"train.lr": 1e-3}, distributions={"train.lr": FloatDistribution(1e-4, 3e-2, log=True)},
            value=value, intermediate_values={2: value - 0.05, 4: value}))
    row = SCHEDULERS["asha"]
    scheduler = load_object(row.cls)(**row.arguments({"max_t": 4}, metric="score", mode="max"))
    _seed_rungs(scheduler, study)
    rungs = {milestone: recorded for milestone, recorded in scheduler._brackets[0]._rungs}
    assert rungs[1] == {"study-0": pytest.approx(0.05), "study-1": pytest.approx(0.45)}
    assert rungs[2] == {"study-0": pytest.approx(0.1), "study-1": pytest.approx(0.5)}


def test_dry_run_validates_and_samples_without_training(tmp_path, data_root, cache_dir, capsys):
    from search.run import main

    space = space_file(tmp_path, data_root, cache_dir)
    assert main(["--space", str(space), "--dry-run", "--trials", "11"]) == 0
    out = capsys.readouterr().out
    assert "trials     11" in out and "sampler    random" in out and "scheduler  asha" in out
    assert "train.lr = " in out and "tasks.da.weight = " in out
    assert not (tmp_path / "studies").exists()


def test_space_errors_are_reported_before_anything_starts(tmp_path, capsys):
    from search.run import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("base: {train: {lr: -1}}\nsampler: {name: tpee}\n")
    assert main(["--space", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: base: train.lr: must be > 0" in err and "sampler.name: unknown 'tpee'" in err


def test_every_scheduler_the_space_accepts_is_built_by_ray():
    from mtl.registry import load_object
    from search.schedulers import SCHEDULERS

    for row in SCHEDULERS.values():  # every option the space validates is one Ray takes, defaults too
        args = {k: (2 if t is int else 2.0) for k, t in row.options.items()}
        load_object(row.cls)(**row.arguments(args, metric="score", mode="max"))
        load_object(row.cls)(**row.arguments({}, metric="score", mode="max"))


def test_help_needs_neither_torch_nor_ray():
    code = "import sys\nfrom search.run import main\ntry:\n main(['--help'])\nexcept SystemExit: pass\n" \
           "assert 'torch' not in sys.modules and 'ray' not in sys.modules, 'heavy import'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=ray_env())
    assert done.returncode == 0, done.stderr
    assert "--time-budget" in done.stdout and "optuna-dashboard" in done.stdout


def _finished(study_db: Path, name: str) -> int:
    if not study_db.exists():
        return 0
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{study_db}")
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # not created yet, or being created by the driver
        return 0
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials())


@pytest.mark.slow
def test_resume_after_sigkill_finishes_the_budget_without_duplicates(tmp_path, data_root, cache_dir):
    space = space_file(tmp_path, data_root, cache_dir, trials=5, name="killed",
                   extra={"scheduler": {"name": "fifo"}}, train={"max_steps": 16})
    cmd = [sys.executable, "-m", "search.run", "--space", str(space)]
    with open(tmp_path / "first.log", "w") as log:  # the child keeps its own copy of the descriptor
        first = subprocess.Popen(cmd, cwd=REPO, env=ray_env(), stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    db = tmp_path / "studies" / "killed.db"
    deadline = time.monotonic() + 240
    while _finished(db, "killed") < 2:
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        assert time.monotonic() < deadline, "no two trials finished in 240 s"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and every Ray process it started
    first.wait()
    stop_ray(os.environ["RAY_TMPDIR"])
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    running = [t.number for t in study.get_trials() if t.state == TrialState.RUNNING]
    assert running, "the kill left no trial running: the test did not test resume"

    second = subprocess.run(cmd, cwd=REPO, env=ray_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "resuming study 'killed'" in second.stderr
    trials = study_of(space, "killed").get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))]
    assert len(finished) == 5, [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    interrupted = [t for t in trials if t.user_attrs.get("interrupted")]
    assert sorted(t.number for t in interrupted) == sorted(running)
    for t in interrupted:  # each interrupted config ran again exactly once, in the same run directory
        retries = [r for r in trials if r.user_attrs.get("retry_of") == t.number]
        # the same values (a kill between two of its draws leaves the rest to be drawn on retry)
        assert len(retries) == 1 and retries[0].params.items() >= t.params.items()
        if "run_dir" in t.user_attrs:
            assert retries[0].user_attrs["run_dir"] == t.user_attrs["run_dir"]
        else:  # killed in the instant between its creation and its first attribute: it never ran
            assert "config" not in t.user_attrs and retries[0].user_attrs.get("resume_run_dir") is None
        assert retries[0].state == TrialState.COMPLETE
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    numbers = [t.number for t in finished]
    assert len(set(numbers)) == len(numbers)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_trials_run_on_an_existing_cluster_through_address(tmp_path, data_root, cache_dir):
    port = _free_port()
    env = ray_env()
    start = subprocess.run(["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                            "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
                           env=env, capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        space = space_file(tmp_path, data_root, cache_dir, trials=2, name="cluster", extra={"scheduler": {"name": "fifo"}})
        done = subprocess.run([sys.executable, "-m", "search.run", "--space", str(space),
                               "--address", f"127.0.0.1:{port}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        study = study_of(space, "cluster")
        assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 2
        assert study.user_attrs["ray_address"] == f"127.0.0.1:{port}"  # the cluster we started, not a new one
    finally:
        stop_ray(os.environ["RAY_TMPDIR"])


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """The TCP sockets in LISTEN state that these processes hold: (pid, address)."""
    inodes: dict[str, int] = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:  # the process ended meanwhile
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                host, port = fields[1].split(":")
                raw = bytes.fromhex(host)
                if len(raw) == 4:
                    ip = socket.inet_ntop(socket.AF_INET, raw[::-1])
                else:  # four little-endian 32-bit words
                    ip = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
                found.append((inodes[fields[9]], f"{ip}:{int(port, 16)}"))
    return found


def _tree(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def test_a_local_search_listens_on_loopback_only(tmp_path, data_root, cache_dir):
    """Ray's GCS, raylet, object store and workers of a search's own Ray: every listening socket
    on 127.0.0.1 or ::1 (the environment does not set Ray's loopback switch: the search does)."""
    env = ray_env()
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in env
    space = space_file(tmp_path, data_root, cache_dir, trials=2, name="sockets", train={"max_steps": 40},
                       extra={"scheduler": {"name": "fifo"}})
    with open(tmp_path / "search.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "search.run", "--space", str(space)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        sockets: list[tuple[int, str]] = []
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                trials = study_of(space, "sockets").get_trials()
            except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # not created yet, or being created
                trials = []
            if any(t.state == TrialState.RUNNING for t in trials):
                time.sleep(3)  # the trial's worker is up
                sockets = _listening(_tree(proc.pid))
                break
            time.sleep(0.5)
        assert sockets, "no listening socket seen while a trial ran:\n" + (tmp_path / "search.log").read_text()
        outside = [s for s in sockets if not s[1].startswith(("127.", "::1:", "::ffff:127."))]
        assert not outside, f"listening beyond loopback: {outside} (all: {sockets})"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stop_ray(os.environ["RAY_TMPDIR"])

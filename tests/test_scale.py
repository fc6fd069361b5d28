"""Scale-out end to end: a Ray cluster started by `ray start` on 127.0.0.1, several
drivers feeding one study (SQLite and a throwaway PostgreSQL server), a driver and a trial
process killed mid-search, and memory between reused trials. Real servers on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

from tests.search_fixtures import REPO, ray_env, space_file
from tests.servers import free_port, postgres_bin, postgres_server, stop_ray

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def cluster() -> Iterator[str]:
    """A Ray head of 2 CPUs on 127.0.0.1, stopped at the end. (A second node on the same host
    cannot join on loopback: Ray rewrites a 127.0.0.1 address to the host's outside IP.)"""
    env, port = {**ray_env(), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, free_port()  # a head on 127.0.0.1
    try:
        started = subprocess.run(["ray", "start", "--head", f"--port={port}", "--include-dashboard=false",
                                  "--node-ip-address=127.0.0.1", "--num-cpus=2", "--disable-usage-stats"],
                                 env=env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr
        yield f"127.0.0.1:{port}"
    finally:
        stop_ray(os.environ["RAY_TMPDIR"])


def _verdicts(trials: list) -> list:
    """Trials that count against the budget: a verdict, not an interruption."""
    return [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))]


def _load(storage: str, name: str) -> list:
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):  # not created yet, or being created by a driver
        return []


def _wait(what: str, check, *, procs: list[subprocess.Popen], logs: list[Path], seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        for proc, log in zip(procs, logs):
            assert proc.poll() is None, f"a driver ended early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"{what}: not within {seconds:.0f} s"
        time.sleep(0.5)


def _two_drivers_one_killed(tmp_path: Path, space: Path, storage: str, address: str) -> None:
    cmd = [sys.executable, "-m", "search.run", "--space", str(space), "--storage", storage,
           "--address", address, "--heartbeat", "2"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=ray_env(), stdout=log.open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True) for log in logs]
    a, b = procs
    try:
        def b_runs_a_trial_and_one_finished() -> bool:
            trials = _load(storage, "shared")
            return bool(_verdicts(trials)) and any(t.state == TrialState.RUNNING and
                                                   t.user_attrs.get("driver", "").endswith(f":{b.pid}")
                                                   for t in trials)
        _wait("driver B running a trial after a first verdict", b_runs_a_trial_and_one_finished, procs=procs,
              logs=logs)
        os.killpg(b.pid, signal.SIGKILL)  # the driver only: the cluster ends its job's trials
        b.wait()
        killed = [t.number for t in _load(storage, "shared")
                  if t.state == TrialState.RUNNING and t.user_attrs["driver"].endswith(f":{b.pid}")]
        assert a.wait(timeout=600) == 0, logs[0].read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    trials = _load(storage, "shared")
    table = [(t.number, t.state.name, t.user_attrs.get("driver"), t.user_attrs.get("fail_reason")) for t in trials]
    done = _verdicts(trials)
    assert len(done) == 6, table  # exactly the budget, between the two drivers
    assert len({t.user_attrs["run_dir"] for t in done}) == 6, table  # no config ran twice as two trials
    assert killed, table
    for number in killed:  # the dead driver's trial: FAIL (interrupted) by heartbeat, rerun once by A
        t = trials[number]
        assert t.state == TrialState.FAIL and t.user_attrs.get("interrupted"), table
        assert "no heartbeat from its search driver" in t.user_attrs["fail_reason"], table
        retries = [r for r in trials if r.user_attrs.get("retry_of") == number]
        assert len(retries) == 1 and retries[0].params == t.params, table
        assert retries[0].user_attrs["run_dir"] == t.user_attrs["run_dir"]
        assert retries[0].state == TrialState.COMPLETE and retries[0].user_attrs["driver"].endswith(f":{a.pid}")
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)], table
    drivers = {t.user_attrs["driver"].rsplit(":", 1)[1] for t in trials}
    assert drivers == {str(a.pid), str(b.pid)}, table  # both drivers ran trials
    workers = [t.user_attrs["worker"] for t in done]
    assert all(w["node_ip"] == "127.0.0.1" and w["device"] == "cpu" for w in workers), workers


def _shared_space(tmp_path: Path, data_root: Path, cache_dir: Path) -> Path:
    return space_file(tmp_path, data_root, cache_dir, trials=6, name="shared", train={"max_steps": 16},
                  extra={"scheduler": {"name": "fifo"},
                         "run": {"trials": 6, "out": str(tmp_path / "runs"), "max_concurrent": 1,
                                 "cpus_per_trial": 1, "seed": 3}})


def test_two_drivers_share_a_sqlite_study_and_rerun_a_killed_drivers_trial(tmp_path, data_root, cache_dir, cluster):
    space = _shared_space(tmp_path, data_root, cache_dir)
    _two_drivers_one_killed(tmp_path, space, f"sqlite:///{tmp_path / 'shared.db'}", cluster)


@pytest.mark.postgres
@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL is not installed (apt-get install postgresql)")
def test_two_drivers_share_a_postgresql_study_and_rerun_a_killed_drivers_trial(tmp_path, data_root, cache_dir,
                                                                                cluster):
    space = _shared_space(tmp_path, data_root, cache_dir)
    with postgres_server() as url:
        _two_drivers_one_killed(tmp_path, space, url, cluster)


@pytest.mark.parametrize("max_failures", [0, 1])
def test_a_killed_trial_process_fails_with_its_reason_or_restarts(tmp_path, data_root, cache_dir, max_failures):
    space = space_file(tmp_path, data_root, cache_dir, trials=4, name="victim", train={"max_steps": 40, "eval_every": 4},
                   extra={"scheduler": {"name": "fifo"},
                          "run": {"trials": 4, "out": str(tmp_path / "runs"), "max_concurrent": 1,
                                  "cpus_per_trial": 1, "seed": 3,
                                  "storage": f"sqlite:///{tmp_path / 'victim.db'}"}})
    log = tmp_path / "driver.log"
    driver = subprocess.Popen([sys.executable, "-m", "search.run", "--space", str(space),
                               "--max-failures", str(max_failures)], cwd=REPO, env=ray_env(), stdout=log.open("w"),
                              stderr=subprocess.STDOUT, start_new_session=True)
    worker_file = tmp_path / "runs" / "trial-0000" / "worker.json"
    history = tmp_path / "runs" / "trial-0000" / "history.jsonl"
    try:
        _wait("trial 0 evaluated once", lambda: worker_file.exists() and history.exists()
              and history.read_text().count("\n") >= 1, procs=[driver], logs=[log])
        os.kill(json.loads(worker_file.read_text())["pid"], signal.SIGKILL)  # the trial's Ray process
        assert driver.wait(timeout=600) == 0, log.read_text()
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
        stop_ray(os.environ["RAY_TMPDIR"])
    trials = _load(f"sqlite:///{tmp_path / 'victim.db'}", "victim")
    table = [(t.number, t.state.name, t.user_attrs.get("fail_reason"), t.user_attrs.get("restarts")) for t in trials]
    assert len(_verdicts(trials)) == 4, table  # the search went on
    first = trials[0]
    if max_failures == 0:
        assert first.state == TrialState.FAIL, table
        assert "worker process has died" in first.user_attrs["fail_reason"], table  # Ray's reason
        assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3, table
    else:
        assert first.state == TrialState.COMPLETE and len(first.user_attrs["restarts"]) == 1, table
        assert "worker process has died" in first.user_attrs["restarts"][0], table
        steps = [json.loads(line)["step"] for line in history.read_text().splitlines()]
        assert steps == sorted(steps) and steps[-1] == 40, steps  # resumed from its checkpoint: one curve
    # Memory between trials in one reused Ray process: when a trial starts, nothing of the last
    # one is alive (no parameter, no tensor), and the process does not grow from trial to trial
    # (the first trial of a process pays for the imports).
    reused = [t.user_attrs["worker"] for t in trials[1:]]
    assert len({w["pid"] for w in reused}) == 1, reused  # reuse_actors: one process ran them
    assert all(w["parameters_alive_at_start"] == 0 and w["tensor_mb_alive_at_start"] < 1 for w in reused), reused
    rss = [w["rss_mb_at_start"] for w in reused]
    assert rss[-1] - rss[1] < 30, rss


def test_two_drivers_on_a_cluster_too_small_for_both_finish(tmp_path, data_root, cache_dir, cluster):
    """Each driver may run 2 trials at once on a 2-CPU cluster: a driver with nothing left to run
    gives its processes (and CPUs) back, so the other's waiting trials start; no deadlock."""
    space = space_file(tmp_path, data_root, cache_dir, trials=6, name="small", train={"max_steps": 6},
                       extra={"scheduler": {"name": "fifo"}})
    storage = f"sqlite:///{tmp_path / 'small.db'}"
    cmd = [sys.executable, "-m", "search.run", "--space", str(space), "--storage", storage, "--address", cluster,
           "--max-concurrent", "2", "--heartbeat", "2"]
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs = []
    for log in logs:
        with log.open("w") as out:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=ray_env(), stdout=out, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    try:
        for proc, log in zip(procs, logs):
            assert proc.wait(timeout=420) == 0, log.read_text()
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    trials = _load(storage, "small")
    assert len(_verdicts(trials)) == 6, [(t.number, t.state.name) for t in trials]


def test_resources_the_cluster_lacks_are_refused_before_the_study_is_written(tmp_path, data_root, cache_dir,
                                                                             cluster):
    space = space_file(tmp_path, data_root, cache_dir, trials=2, name="big")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "search.run", "--space", str(space), "--address", cluster,
                           "--cpus-per-trial", "4"], cwd=REPO, env=ray_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--cpus-per-trial (run.cpus_per_trial) 4: this Ray cluster has 2 CPUs in all" in done.stderr
    assert "Traceback" not in done.stderr and time.monotonic() - started < 60
    assert not (tmp_path / "studies").exists()

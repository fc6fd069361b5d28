"""What a search asks of the Ray cluster, checked without Ray: where it listens, whether it can be
reached, and whether a trial's resources fit in it. `search.tune` (which imports Ray) and the
dry run use these; nothing here imports ray.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Mapping
from pathlib import Path

from mtl.errors import SetupError

__all__ = ["IDLE_WORKERS_ENV", "check_reachable", "local_resources", "loopback", "prepare_env", "resource_problem"]

REACH_SECONDS = 10
"""How long a driver tries to reach an --address before it says it cannot."""


def loopback(address: str | None) -> bool:
    """Whether the search's Ray lives on this machine's loopback: a Ray of its own (no
    address), or a head at 127.x / localhost / ::1."""
    if address is None:
        return True
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


IDLE_WORKERS_ENV = "RAY_num_workers_soft_limit"
"""Ray's setting (read from the environment, case as in Ray's config) for the idle worker
processes a node keeps."""


def prepare_env(address: str | None, *, verbose: bool, workers: int = 0) -> None:
    """Set Ray's environment before `import ray` reads it (Ray reads some switches at import).

    A Ray on the loopback keeps every listener (GCS, raylet, object store, gRPC) on 127.0.0.1:
    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` is Ray's switch for "node IP = 127.0.0.1", and a
    driver joining a head on 127.0.0.1 needs it too (else it looks for the head at the
    machine's outside address). A Ray of our own has no token (nothing else can reach it), and
    keeps up to ``workers`` idle worker processes (at least one per CPU, Ray's own limit): with
    fewer, Ray kills the workers of a trial's pair tasks as they finish and starts new ones for
    the next trial, each importing torch again (a tiny per_pair trial took 27 s instead of 10 s).
    """
    if loopback(address):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if address is None:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        if workers > (os.cpu_count() or 1):  # Ray's config from the environment; a user's own setting wins
            os.environ.setdefault(IDLE_WORKERS_ENV, str(workers))
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    if not verbose:  # the study records each failure with its traceback; Ray need not print them too
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")


def check_reachable(address: str, *, seconds: float = REACH_SECONDS) -> None:
    """Refuse an ``--address host:port`` where nothing answers (Ray would retry forever).

    ``auto`` is left to Ray (it finds a cluster started on this machine, or says there is none).

    Raises:
        SetupError: The address is malformed, or nothing listens there within ``seconds``.
    """
    if address == "auto" or address.startswith("ray://"):
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise SetupError(f"--address {address}: expected host:port (the head's GCS, e.g. 10.0.0.5:6379) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=seconds):
            return
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise SetupError(f"--address {address}: no Ray head answers there ({reason} after at most {seconds:g} s); "
                         f"start one with `ray start --head --port {port}`, or check the address") from e


def local_resources() -> dict[str, float]:
    """The CPUs this process may use and the NVIDIA GPUs it sees (what a Ray of our own gets),
    without importing torch or ray."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    gpus = len(list(Path("/dev").glob("nvidia[0-9]*")))  # the NVIDIA devices of this machine
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        gpus = min(gpus, len([d for d in visible.split(",") if d.strip()]))
    return {"CPU": float(cpus), "GPU": float(gpus)}


def resource_problem(*, cpus: float, gpus: float, totals: Mapping[str, float], where: str) -> str | None:
    """Why a trial asking ``cpus`` and ``gpus`` can never start in a cluster of ``totals`` (None: it can)."""
    have_cpu, have_gpu = float(totals.get("CPU", 0.0)), float(totals.get("GPU", 0.0))
    if cpus > have_cpu:
        return (f"--cpus-per-trial (run.cpus_per_trial) {cpus:g}: {where} has {have_cpu:g} CPUs in all, so no "
                f"trial could ever start; ask for at most {have_cpu:g}")
    if gpus > have_gpu:
        return (f"--gpus-per-trial (run.gpus_per_trial) {gpus:g}: {where} has {have_gpu:g} GPUs in all, so no "
                "trial could ever start; " + ("ask for 0 (train on the CPU)" if not have_gpu else
                                              f"ask for at most {have_gpu:g}"))
    return None

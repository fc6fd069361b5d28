"""The device a run uses and its autocast: one choice, made the same way by training and prediction."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from mtl.errors import SetupError

__all__ = ["available_cpus", "pick_device", "pick_threads", "precision"]

log = logging.getLogger(__name__)
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")
"""A cgroup v2 CPU quota: ``<quota> <period>`` in microseconds, or ``max``."""


def pick_device(wanted: str) -> torch.device:
    """``train.device``: auto (CUDA when torch sees one, else the CPU), cpu, or cuda.

    Raises:
        SetupError: cuda is asked for and torch sees no CUDA device.
    """
    if wanted == "cuda" and not torch.cuda.is_available():
        raise SetupError("train.device: cuda was asked for, but torch sees no CUDA device (a CPU build of torch, "
                         "or no GPU visible); set train.device: auto or cpu")
    return torch.device("cuda" if wanted != "cpu" and torch.cuda.is_available() else "cpu")


def precision(wanted: str, device: torch.device) -> tuple[Callable[[], Any], Any]:
    """``train.precision`` on ``device``: an autocast context factory and the fp16 grad scaler
    (None unless fp16). On the CPU always fp32; auto is bf16 where the GPU supports it."""
    if device.type != "cuda" or wanted == "fp32":
        return contextlib.nullcontext, None
    if wanted == "auto":
        wanted = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    dtype = torch.bfloat16 if wanted == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return partial(torch.autocast, device_type="cuda", dtype=dtype), scaler


def available_cpus() -> int:
    """The CPUs this process may run on: its affinity, capped by a container's CPU quota."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = CPU_MAX.read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, n)


def pick_threads(wanted: int | None) -> int:
    """``train.threads``: as asked; None: what the process may use (`available_cpus`, and
    $OMP_NUM_THREADS where a user or Ray set it), never more than torch would use by itself
    (a Ray trial has set that to its CPUs)."""
    limit = available_cpus()
    if wanted is not None:
        if wanted > limit:
            log.warning("train.threads=%d, but this process may use %d CPUs: the threads will wait on each other",
                        wanted, limit)
        return wanted
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        limit = min(limit, int(env))
    return max(1, min(limit, torch.get_num_threads()))

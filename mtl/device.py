"""The device a run uses and its autocast: one choice, made the same way by training and prediction."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import Any

import torch

from mtl.errors import SetupError

__all__ = ["pick_device", "precision"]


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

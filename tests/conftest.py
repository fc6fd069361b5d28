"""Shared test fixtures: the real MLQE-PE data beside the checkout, tiny configs."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a hub name would otherwise hang ~48 s first
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Every Ray the tests start keeps its session here, and tests stop what runs under it
# (tests.servers.stop_ray), never a user's own Ray on the same machine.
# (Always a new folder: a RAY_TMPDIR of the user's may hold the user's own Ray.)
os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="mtlt-ray-")



@pytest.fixture(scope="session", autouse=True)
def _ray_sessions_removed():
    """At the end, stop whatever Ray a test left under RAY_TMPDIR and remove its logs."""
    yield
    from tests.servers import stop_ray

    stop_ray(os.environ["RAY_TMPDIR"])
    shutil.rmtree(os.environ["RAY_TMPDIR"], ignore_errors=True)


DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlqe-pe"


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not (DATA_ROOT / "direct-assessments").exists():
        pytest.fail(f"MLQE-PE data not found at {DATA_ROOT}: tests read ../shared/data/mlqe-pe beside the checkout")
    return DATA_ROOT


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One tokenizer/data cache for the whole session (tests share tokenized slices)."""
    return tmp_path_factory.mktemp("mtl-cache")


def tiny_raw(data_root: Path, cache_dir: Path, **sections: Any) -> dict[str, Any]:
    """A tiny config as a dict: hidden 32, 2 layers, 2 heads, small real-data slices."""
    raw: dict[str, Any] = {
        "data": {"root": str(data_root), "pairs": ["en-de"], "max_train_samples": 64,
                 "max_eval_samples": 24, "cache_dir": str(cache_dir)},
        "model": {"backbone": "bert", "hidden_size": 32, "num_layers": 2, "num_heads": 2,
                  "vocab_size": 1000, "max_length": 128, "dropout": 0.0},
        "tasks": {"da": {}, "word_tags": {}},
        "train": {"seed": 7, "lr": 3e-3, "batch_size": 8, "max_steps": 6, "eval_every": 3},
    }
    for section, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(section), dict) and section != "tasks":
            raw[section] = {**raw[section], **value}
        else:
            raw[section] = value
    return raw


@pytest.fixture
def tiny(data_root: Path, cache_dir: Path):
    """Factory: ``tiny(tasks={...}, train={...})`` -> validated RunConfig."""
    from mtl.config import config_from_dict

    def make(**sections: Any):
        return config_from_dict(tiny_raw(data_root, cache_dir, **sections), source="tiny")
    return make

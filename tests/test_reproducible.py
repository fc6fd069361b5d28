"""The same config trains the same model in two fresh processes: the promise behind exporting a
search's best config and retraining it on another machine.

Each process has its own cache folder (so each trains its own tokenizer and tokenizes the data
itself), its own hash seed, one torch thread, CPU. Tokenizer files and weights must be
byte-identical, metrics equal to 1e-5.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import tiny_raw

REPO = Path(__file__).resolve().parents[1]


def _train_twice(tmp_path: Path, raw: dict) -> tuple[Path, Path]:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw), encoding="utf-8")
    runs, procs = [], []
    for k in ("a", "b"):
        env = {**os.environ, "MTL_CACHE": str(tmp_path / f"cache-{k}"), "PYTHONHASHSEED": str(ord(k)),
               "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "true",
               "PYTHONPATH": str(REPO)}
        runs.append(tmp_path / f"run-{k}")
        procs.append(subprocess.Popen([sys.executable, "-m", "mtl", "train", "--config", str(config),
                                       "--out", str(runs[-1])], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, out[-3000:]
    return runs[0], runs[1]


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["bert", "roberta", "xlnet"])
def test_two_processes_train_the_same_model(tmp_path, data_root, backbone):
    from safetensors.torch import load_file

    raw = tiny_raw(data_root, tmp_path, model={"backbone": backbone, "vocab_size": 600},
                   tasks={"da": {}, "word_tags": {}},
                   train={"max_steps": 4, "eval_every": 4, "device": "cpu"},
                   data={"max_train_samples": 96, "max_eval_samples": 24})
    del raw["data"]["cache_dir"]  # each process its own ($MTL_CACHE)
    a, b = _train_twice(tmp_path, raw)

    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (a / "checkpoint" / name).read_bytes() == (b / "checkpoint" / name).read_bytes(), name
    wa, wb = load_file(a / "checkpoint" / "model.safetensors"), load_file(b / "checkpoint" / "model.safetensors")
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not (wa[k] == wb[k]).all()]
    assert not different, f"weights differ: {different[:5]}"
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    flat_a, flat_b = _numbers(ma["metrics"]), _numbers(mb["metrics"])
    assert ma["objective"] == pytest.approx(mb["objective"], abs=1e-5)
    assert flat_a.keys() == flat_b.keys() and flat_a
    off = {k: (flat_a[k], flat_b[k]) for k in flat_a
           if not (abs(flat_a[k] - flat_b[k]) <= 1e-5 or (math.isnan(flat_a[k]) and math.isnan(flat_b[k])))}
    assert not off, off


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in _numbers(sub, f"{prefix}{key}.").items()}
    return {prefix: float(tree)} if isinstance(tree, int | float) and not isinstance(tree, bool) else {}

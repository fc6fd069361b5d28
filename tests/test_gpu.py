"""On a CUDA device (skipped without one): the trainer on the GPU, a GPU checkpoint scored on
the CPU, and a search whose trials Ray packs onto one GPU with fractional `--gpus-per-trial`,
each trial starting with the GPU memory of the last one freed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys

import optuna
import pytest
import torch
from optuna.trial import TrialState

from mtl.model.multitask import MultiTaskModel
from mtl.train import train
from tests.search_fixtures import REPO, ray_env, space_file

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_the_trainer_runs_on_the_gpu_and_its_checkpoint_predicts_the_same_on_the_cpu(tiny, tmp_path, precision):
    from mtl.device import precision as _precision
    from mtl.evaluate import predict_split
    from mtl.predict import _split

    cfg = tiny(tasks={"da": {}, "word_tags": {}, "mlm": {}}, weighting="uncertainty",
               train={"device": "cuda", "precision": precision, "max_steps": 12, "eval_every": 6})
    torch.cuda.reset_peak_memory_stats()
    result = train(cfg, out_dir=tmp_path)
    assert torch.cuda.max_memory_allocated() > 0  # it ran there
    assert result["objective"] == result["objective"]  # not NaN
    model = MultiTaskModel.from_pretrained(tmp_path / "checkpoint")
    data = _split(model, cfg.data.root, "en-de", "dev", 24)
    cuda = torch.device("cuda")
    on_gpu = predict_split(model.to(cuda), data, batch_size=8, device=cuda, autocast=_precision(precision, cuda)[0])
    on_cpu = predict_split(model.to("cpu"), data, batch_size=8, device=torch.device("cpu"), autocast=contextlib.nullcontext)
    gpu, cpu = torch.tensor(on_gpu["da"], dtype=torch.float64), torch.tensor(on_cpu["da"], dtype=torch.float64)
    # fp32 kernels differ from the CPU's in the last bits; bf16/fp16 keep 8/11 bits of mantissa
    tol = 1e-4 if precision == "fp32" else 2e-2
    assert (gpu - cpu).abs().max() <= tol * max(1.0, cpu.abs().max()), (gpu - cpu).abs().max()
    gpu_tags = [t for row in on_gpu["word_tags"] for t in row]
    cpu_tags = [t for row in on_cpu["word_tags"] for t in row]
    agree = sum(a == b for a, b in zip(gpu_tags, cpu_tags))
    assert agree / len(cpu_tags) > (0.999 if precision == "fp32" else 0.97)
    if precision == "fp32":  # and the metrics the trainer recorded on the GPU come back on the CPU
        rescored = _score_on_cpu(model, cfg)
        assert rescored["metrics"]["en-de"]["da"]["pearson"] == pytest.approx(
            result["metrics"]["en-de"]["da"]["pearson"], abs=1e-4)


def _score_on_cpu(model, cfg):
    from unittest import mock

    from mtl import predict

    with mock.patch.object(predict, "_device", lambda: torch.device("cpu")):  # score_run picks cuda when there
        return predict.score_run(model, root=cfg.data.root, split="dev", pairs=["en-de"], max_samples=24)


@pytest.mark.ray
@pytest.mark.slow
def test_fractional_gpus_pack_trials_on_one_gpu_and_free_its_memory_between_trials(tmp_path, data_root, cache_dir):
    space = space_file(tmp_path, data_root, cache_dir, trials=8, name="gpu", train={"max_steps": 24, "eval_every": 6},
                   extra={"scheduler": {"name": "fifo"},
                          "run": {"trials": 8, "out": str(tmp_path / "runs"), "max_concurrent": 4,
                                  "cpus_per_trial": 1, "gpus_per_trial": 0.25, "seed": 3,
                                  "storage": f"sqlite:///{tmp_path / 'gpu.db'}"}})
    done = subprocess.run([sys.executable, "-m", "search.run", "--space", str(space)], cwd=REPO, env=ray_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = optuna.load_study(study_name="gpu", storage=f"sqlite:///{tmp_path / 'gpu.db'}").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 8
    workers = [t.user_attrs["worker"] for t in trials]
    print(json.dumps(workers, indent=1))
    assert all(w["device"] != "cpu" and len(w["gpu_ids"]) == 1 for w in workers), workers  # Ray gave each a GPU
    assert len({w["gpu_ids"][0] for w in workers}) == 1  # the same one: four trials share it
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials)
    overlap = max(sum(s <= start < e for s, e in spans) for start, _ in spans)
    assert overlap >= 2, spans  # several trials ran on the GPU at once
    seen: set[int] = set()
    for w in workers:  # a reused process starts its next trial with nothing of the last alive
        if w["pid"] in seen:
            assert w["cuda_allocated_mb_at_start"] == 0 and w["parameters_alive_at_start"] == 0, w
        seen.add(w["pid"])
    assert len(seen) < len(workers), workers  # some process was reused

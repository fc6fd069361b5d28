"""How a finalized member's training is planned from its trial (no Ray): it evaluates as often
per epoch as the trial did, on however much more data it trains."""

from __future__ import annotations

import copy

import pytest

from search.finalizing import _RowCounter, member_eval_every
from tests.conftest import tiny_raw


def _trial(data_root, cache_dir, *, pairs, samples, eval_every=63, max_steps=None):
    return tiny_raw(data_root, cache_dir, data={"pairs": pairs, "max_train_samples": samples},
                    train={"max_steps": max_steps, "epochs": 1.5, "eval_every": eval_every})


def _member(trial, samples):
    member = copy.deepcopy(trial)
    member["data"].update(max_train_samples=samples, max_eval_samples=None)
    return member


@pytest.mark.parametrize("per_pair, samples, expected", [
    (False, 3000, 63 * 6),      # one joint model on 6x the rows per pair: 6x the steps per evaluation
    (False, 500, 63),           # the same data: the trial's own
    (True, 3000, 63 * 6 * 2),   # the trial trained one model per pair; the member one on both
    (False, 200, 25),           # fewer rows: evaluates more often (63 x 0.4 = 25.2)
])
def test_a_member_evaluates_as_often_per_epoch_as_its_trial(data_root, cache_dir, per_pair, samples, expected):
    trial = _trial(data_root, cache_dir, pairs=["ro-en", "et-en"], samples=500)
    assert member_eval_every(trial, _member(trial, samples), per_pair=per_pair, rows=_RowCounter()) == expected


def test_all_the_data_counts_the_real_rows_of_each_pair(data_root, cache_dir):
    trial = _trial(data_root, cache_dir, pairs=["ro-en", "si-en"], samples=500)
    rows = _RowCounter()
    full = rows(_member(trial, None), "ro-en") + rows(_member(trial, None), "si-en")
    assert full == 14000  # MLQE-PE: 7,000 training segments per pair
    assert member_eval_every(trial, _member(trial, None), per_pair=False, rows=rows) == round(63 * full / 1000)
    assert rows(_member(trial, 10**6), "ro-en") == 7000  # a cap above the pair's size reads what is there


def test_a_config_that_fixes_its_steps_keeps_its_eval_every(data_root, cache_dir):
    trial = _trial(data_root, cache_dir, pairs=["ro-en"], samples=500, eval_every=4, max_steps=40)
    assert member_eval_every(trial, _member(trial, None), per_pair=False, rows=_RowCounter()) == 4

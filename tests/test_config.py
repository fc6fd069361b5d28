"""The trainer config loader: defaults, round trips, and every error of a file at once.

No torch here except in the last test (the WEIGHTINGS rows <-> constructors check).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mtl.catalogue import TASKS
from mtl.config import (
    ConfigError,
    DataConfig,
    FeaturesConfig,
    MLMConfig,
    ModelConfig,
    PostEditConfig,
    RegressionTaskConfig,
    RunConfig,
    TrainConfig,
    WordTagsConfig,
    config_from_dict,
    dump_config,
    load_config,
    set_dotted,
    to_dict,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "en-de.yaml"
SRC = "cfg.yaml"
TOP_KEYS = "data, model, tasks, features, weighting, weighting_args, train"
TASK_NAMES = "da, hter, word_tags, source_tags, post_edit, mlm"


def errors_of(raw: Any, **kw: Any) -> list[str]:
    """The ``.errors`` of the ConfigError that ``config_from_dict(raw)`` must raise."""
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, source=SRC, **kw)
    assert info.value.errors, "a ConfigError must carry at least one error"
    assert str(info.value) == "\n".join(info.value.errors)
    return info.value.errors


def one_error(raw: Any, **kw: Any) -> str:
    errors = errors_of(raw, **kw)
    assert len(errors) == 1, errors
    return errors[0]


def write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults, the example, round trips ---------------------------------------------------


def test_empty_mapping_gives_the_defaults() -> None:
    cfg = config_from_dict({})
    assert cfg == RunConfig()
    assert cfg.data.pairs == ("en-de",)
    assert cfg.tasks == {"da": RegressionTaskConfig()}
    assert cfg.weighting == "fixed" and cfg.weighting_args == {}
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    assert cfg.model.word_pooling == "first"


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_gives_the_defaults(tmp_path: Path, text: str) -> None:
    assert load_config(write(tmp_path, text)) == RunConfig()


def test_null_section_gives_its_defaults() -> None:
    cfg = config_from_dict({"model": None, "train": None, "data": {"root": "/d"}})
    assert cfg.model == ModelConfig() and cfg.train == TrainConfig()
    assert cfg.data == DataConfig(root="/d")


def test_config_is_frozen() -> None:
    cfg = config_from_dict({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_example_file_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.data.pairs == ("en-de",)
    assert cfg.data.max_train_samples == 2000 and cfg.data.max_eval_samples == 300
    assert cfg.model.vocab_size == 6000
    assert list(cfg.tasks) == ["da", "hter", "word_tags", "source_tags", "post_edit", "mlm"]
    assert cfg.tasks["word_tags"] == WordTagsConfig(weight=0.5, bad_weight=3.0, gaps="concat")
    assert cfg.tasks["post_edit"] == PostEditConfig(weight=0.3, layers=1, heads=2, max_length=96)
    assert cfg.tasks["mlm"] == MLMConfig(weight=0.1)
    assert cfg.train.lr == pytest.approx(1e-3)
    assert cfg.train.epochs == 2.0 and isinstance(cfg.train.epochs, float)
    assert cfg.train.eval_every == 125


def test_example_round_trips_through_dump_config(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE)
    out = tmp_path / "resolved.yaml"
    dump_config(cfg, out, header="# resolved config\n")
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# resolved config\n")
    assert "dropout: 0.1" in text  # complete with defaults, not only what the file set
    again = load_config(out)
    assert to_dict(again) == to_dict(cfg)
    assert again == cfg


def test_round_trip_keeps_objective_weighting_args_and_small_floats(tmp_path: Path) -> None:
    cfg = config_from_dict({
        "tasks": {"da": {}, "word_tags": {"gaps": "none"}},
        "weighting": "dwa",
        "weighting_args": {"temperature": 1.5, "period": 7},
        "train": {"lr": "1e-5", "objective": {"da.pearson": 2, "word_tags.all_mcc": 0.5}, "max_steps": 3},
        "data": {"pairs": ["en-de", "en-zh"], "cache_dir": "/tmp/c"},
    })
    out = tmp_path / "x.yaml"
    dump_config(cfg, out)
    again = load_config(out)
    assert to_dict(again) == to_dict(cfg)
    assert again.train.lr == 1e-5
    assert again.data.pairs == ("en-de", "en-zh")
    assert again.train.objective == {"da.pearson": 2.0, "word_tags.all_mcc": 0.5}


def test_to_dict_is_plain_and_complete() -> None:
    d = to_dict(config_from_dict({"tasks": {"da": {}, "mlm": None}}))
    assert d["data"]["pairs"] == ["en-de"]  # tuple -> list
    assert d["tasks"] == {"da": {"weight": 1.0}, "mlm": {"weight": 1.0, "mask_prob": 0.15}}
    assert set(d) == set(TOP_KEYS.split(", "))
    assert d["model"]["word_pooling"] == "first" and d["train"]["objective"] is None


# --- every error of a file at once ----------------------------------------------------------

MANY_MISTAKES = """\
modle: {hidden_size: 32}
data:
  pairs: [en-de]
  max_train_smaples: 10
model:
  hidden_size: 30
  num_heads: 4
  word_pooling: avg
  dropout: 1.5
tasks:
  da: {}
  word_tag: {}
weighting: gradnrom
train:
  batch_size: sixteen
  warmup_ratio: 1.5
"""


def test_every_error_of_a_file_is_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, MANY_MISTAKES)
    p = re.escape(str(path))
    expected = [
        rf"{p}: modle: unknown key for the config; did you mean 'model'\? .*valid: {TOP_KEYS}$",
        rf"{p}: data\.max_train_smaples: unknown key for data; did you mean 'max_train_samples'\?",
        rf"{p}: model\.word_pooling: must be one of first, mean, max, got 'avg'$",
        rf"{p}: model\.dropout: must be in \[0, 1\), got 1\.5$",
        rf"{p}: model\.hidden_size: must be divisible by num_heads, got hidden_size=30, num_heads=4$",
        rf"{p}: tasks\.word_tag: unknown task 'word_tag'; did you mean 'word_tags'\? .*valid: {TASK_NAMES}$",
        rf"{p}: weighting: unknown 'gradnrom'; did you mean 'gradnorm'\? valid: dwa, famo, fixed, gradnorm, pcgrad, uncertainty$",
        rf"{p}: train\.batch_size: must be int, got 'sixteen'$",
        rf"{p}: train\.warmup_ratio: must be in \[0, 1\), got 1\.5$",
    ]
    with pytest.raises(ConfigError, match=rf"{p}: model\.word_pooling: ") as info:
        load_config(path)
    errors = info.value.errors
    assert len(errors) == len(expected), "\n".join(errors)
    for pattern in expected:
        hits = [e for e in errors if re.match(pattern, e)]
        assert len(hits) == 1, f"{pattern!r} matched {hits} in\n" + "\n".join(errors)


def test_unknown_key_without_a_close_match_lists_the_valid_keys() -> None:
    error = one_error({"zzzz": 1})
    assert error.startswith(f"{SRC}: zzzz: unknown key for the config")
    assert "did you mean" not in error
    assert error.endswith(f"valid: {TOP_KEYS}")


def test_unknown_task_option_names_the_task_path() -> None:
    error = one_error({"tasks": {"da": {"bad_weight": 2}}})
    assert error == f"{SRC}: tasks.da.bad_weight: unknown key for tasks.da; did you mean 'weight'? valid: weight"


def test_section_that_is_not_a_mapping() -> None:
    assert one_error({"model": 5}) == f"{SRC}: model: must be a mapping, got 5"
    assert one_error({"tasks": ["da"]}) == (
        f"{SRC}: tasks: must be a mapping of task name -> options, got ['da']")


# --- the file itself ---------------------------------------------------------------------------


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model: {hidden_size: 64\ntrain: [\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: not valid YAML: ") as info:
        load_config(path)
    assert len(info.value.errors) == 1
    assert isinstance(info.value.__cause__, Exception)  # chained from the YAML error


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: no such file$"):
        load_config(path)


def test_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(tmp_path))}: is a directory, expected a trainer config$"):
        load_config(tmp_path)


@pytest.mark.parametrize(("text", "kind"), [("- a\n- b\n", "list"), ("hello\n", "str"), ("3\n", "int")])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: the top level must be a mapping, got {kind}$"):
        load_config(path)


def test_top_level_not_a_mapping_from_dict() -> None:
    with pytest.raises(ConfigError, match=r"^base: the top level must be a mapping, got list$"):
        config_from_dict(["da"], source="base")


# --- scalar types --------------------------------------------------------------------------------


def test_exponent_without_dot_loads_as_float(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "train:\n  lr: 1e-3\n  weight_decay: 5E-2\n"))
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float)
    assert cfg.train.weight_decay == 0.05


def test_non_numeric_string_for_a_float_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  lr: fast\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: train\.lr: must be float, got 'fast'$"):
        load_config(path)


def test_int_for_a_float_becomes_float() -> None:
    cfg = config_from_dict({"model": {"dropout": 0}, "train": {"epochs": 3}})
    assert cfg.train.epochs == 3.0 and type(cfg.train.epochs) is float
    assert type(cfg.model.dropout) is float


def test_integral_float_for_an_int_is_accepted() -> None:
    cfg = config_from_dict({"train": {"batch_size": 2.0, "max_steps": 10.0}})
    assert cfg.train.batch_size == 2 and type(cfg.train.batch_size) is int
    assert type(cfg.train.max_steps) is int


def test_fractional_float_for_an_int_is_rejected() -> None:
    assert one_error({"train": {"batch_size": 2.5}}) == f"{SRC}: train.batch_size: must be int, got 2.5"


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int_or_float(value: bool) -> None:
    assert one_error({"model": {"num_layers": value}}) == f"{SRC}: model.num_layers: must be int, got {value}"
    assert one_error({"train": {"lr": value}}) == f"{SRC}: train.lr: must be float, got {value}"


def test_string_for_an_int_is_rejected() -> None:
    assert one_error({"train": {"seed": "13"}}) == f"{SRC}: train.seed: must be int, got '13'"


def test_number_for_a_string_is_rejected() -> None:
    assert one_error({"data": {"root": 5}}) == f"{SRC}: data.root: must be str, got 5"


def test_optional_accepts_null() -> None:
    cfg = config_from_dict({"train": {"max_grad_norm": None, "patience": None}, "model": {"pretrained": None}})
    assert cfg.train.max_grad_norm is None and cfg.train.patience is None


def test_literal_lists_its_choices() -> None:
    assert one_error({"train": {"precision": "fp8"}}) == (
        f"{SRC}: train.precision: must be one of auto, fp32, bf16, fp16, got 'fp8'")


@pytest.mark.parametrize(("raw", "message"), [
    ({"train": {"lr": 0}}, "train.lr: must be > 0, got 0.0"),
    ({"train": {"max_steps": 0}}, "train.max_steps: must be >= 1, got 0"),
    ({"train": {"patience": 0}}, "train.patience: must be >= 1 or null, got 0"),
    ({"model": {"max_length": 4}}, "model.max_length: must be >= 8, got 4"),
    ({"data": {"max_eval_samples": 0}}, "data.max_eval_samples: must be >= 1 or null, got 0"),
    ({"data": {"pairs": []}}, "data.pairs: must name at least one language pair, got []"),
    ({"tasks": {"word_tags": {"bad_weight": 0}}}, "tasks.word_tags.bad_weight: must be > 0, got 0.0"),
    ({"tasks": {"da": {"weight": -1}}}, "tasks.da.weight: must be >= 0, got -1.0"),
])
def test_out_of_range_states_rule_and_value(raw: dict[str, Any], message: str) -> None:
    assert one_error(raw) == f"{SRC}: {message}"


# --- tuple fields --------------------------------------------------------------------------------


def test_single_string_for_a_tuple_becomes_one_item() -> None:
    assert config_from_dict({"data": {"pairs": "en-zh"}}).data.pairs == ("en-zh",)


def test_list_for_a_tuple_becomes_a_tuple() -> None:
    assert config_from_dict({"data": {"pairs": ["en-de", "ro-en"]}}).data.pairs == ("en-de", "ro-en")


def test_bad_pair_is_named_by_index() -> None:
    assert one_error({"data": {"pairs": ["en-de", "xx"]}}) == (
        f"{SRC}: data.pairs[1]: must be a name of data.datasets or an MLQE-PE pair like 'en-de', got 'xx'")


def test_wrong_item_type_is_named_by_index() -> None:
    assert one_error({"data": {"pairs": ["en-de", 3]}}) == f"{SRC}: data.pairs[1]: must be str, got 3"


def test_mapping_for_a_tuple_is_rejected() -> None:
    assert one_error({"data": {"pairs": {"en": "de"}}}) == f"{SRC}: data.pairs: must be a list, got {{'en': 'de'}}"


# --- overrides -------------------------------------------------------------------------------------


def test_overrides_apply_before_validation() -> None:
    raw = {"tasks": {"da": {}, "word_tags": None}, "train": {"lr": 0.5}}
    cfg = config_from_dict(raw, overrides={"train.lr": 0.01, "tasks.word_tags.bad_weight": 5})
    assert cfg.train.lr == 0.01
    assert cfg.tasks["word_tags"].bad_weight == 5.0  # type: ignore[attr-defined]
    assert list(cfg.tasks) == ["da", "word_tags"]
    assert raw == {"tasks": {"da": {}, "word_tags": None}, "train": {"lr": 0.5}}  # input untouched


def test_overrides_through_load_config(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLE, overrides={"data.root": str(tmp_path), "model.hidden_size": 32})
    assert cfg.data.root == str(tmp_path) and cfg.model.hidden_size == 32


def test_overridden_value_is_validated() -> None:
    assert one_error({}, overrides={"train.lr": -1}) == f"{SRC}: train.lr: must be > 0, got -1.0"
    assert one_error({}, overrides={"train.lr": "1e-3x"}) == f"{SRC}: train.lr: must be float, got '1e-3x'"


def test_override_with_unknown_key_names_that_key() -> None:
    error = one_error({}, overrides={"train.lrr": 0.01})
    assert error.startswith(f"{SRC}: train.lrr: unknown key for train; did you mean 'lr'?")


def test_set_dotted_creates_and_replaces_mappings() -> None:
    raw: dict[str, Any] = {"tasks": {"da": None}}
    set_dotted(raw, "tasks.da.weight", 2)
    set_dotted(raw, "model.hidden_size", 32)
    set_dotted(raw, "weighting", "dwa")
    assert raw == {"tasks": {"da": {"weight": 2}}, "model": {"hidden_size": 32}, "weighting": "dwa"}


# --- tasks -------------------------------------------------------------------------------------------


def test_task_with_empty_or_null_options_gets_defaults() -> None:
    cfg = config_from_dict({"tasks": {"da": {}, "word_tags": None, "post_edit": None, "mlm": {}}})
    assert cfg.tasks == {"da": RegressionTaskConfig(), "word_tags": WordTagsConfig(),
                         "post_edit": PostEditConfig(), "mlm": MLMConfig()}
    assert type(cfg.tasks["da"]) is TASKS["da"].options


def test_no_tasks_is_an_error() -> None:
    assert one_error({"tasks": {}}) == f"{SRC}: tasks: enable at least one task; valid: {TASK_NAMES}"


def test_only_mlm_is_an_error() -> None:
    assert one_error({"tasks": {"mlm": None}}) == (
        f"{SRC}: tasks: mlm is auxiliary: enable at least one QE task beside it")


def test_unknown_task_without_close_match_lists_valid_tasks() -> None:
    error = one_error({"tasks": {"da": {}, "bleu": {}}})
    assert error.startswith(f"{SRC}: tasks.bleu: unknown task 'bleu'") and "did you mean" not in error
    assert error.endswith(f"valid: {TASK_NAMES}")


def test_per_task_options_are_validated_with_key_paths() -> None:
    errors = errors_of({"tasks": {"da": {}, "post_edit": {"beam_size": 0, "decoding": "sample"},
                                  "mlm": {"mask_prob": 1.5}}})
    assert sorted(errors) == sorted([
        f"{SRC}: tasks.post_edit.decoding: must be one of greedy, beam, got 'sample'",
        f"{SRC}: tasks.post_edit.beam_size: must be >= 1, got 0",
        f"{SRC}: tasks.mlm.mask_prob: must be in (0, 1), got 1.5",
    ])


def test_post_edit_heads_must_divide_hidden_size() -> None:
    raw = {"model": {"hidden_size": 64}, "tasks": {"da": {}, "post_edit": {"heads": 3}}}
    assert one_error(raw) == (
        f"{SRC}: tasks.post_edit.heads: must divide model.hidden_size, got heads=3, hidden_size=64")
    raw["model"]["pretrained"] = "some/checkpoint"  # its hidden size is unknown here: not checked
    assert config_from_dict(raw).tasks["post_edit"].heads == 3  # type: ignore[attr-defined]


# --- weighting --------------------------------------------------------------------------------------


def test_weighting_args_of_dwa() -> None:
    cfg = config_from_dict({"weighting": "dwa", "weighting_args": {"temperature": 2}})
    assert cfg.weighting == "dwa" and cfg.weighting_args == {"temperature": 2}


def test_misspelt_weighting_arg_suggests_the_right_one() -> None:
    error = one_error({"weighting": "dwa", "weighting_args": {"temprature": 2}})
    assert error.startswith(
        f"{SRC}: weighting_args.temprature: unknown key for weighting 'dwa'; did you mean 'temperature'?")
    assert "temperature, period" in error


def test_weighting_args_for_fixed_are_rejected() -> None:
    assert one_error({"weighting_args": {"temperature": 2}}).startswith(
        f"{SRC}: weighting_args.temperature: unknown key for weighting 'fixed'")


@pytest.mark.parametrize("value", ["hot", True, [1]])
def test_weighting_arg_must_be_a_number(value: Any) -> None:
    assert one_error({"weighting": "gradnorm", "weighting_args": {"alpha": value}}) == (
        f"{SRC}: weighting_args.alpha: must be a number, got {value!r}")


def test_weighting_args_must_be_a_mapping() -> None:
    assert one_error({"weighting": "dwa", "weighting_args": [2]}) == (
        f"{SRC}: weighting_args: must be a mapping, got [2]")


# --- objective --------------------------------------------------------------------------------------


def test_explicit_objective() -> None:
    cfg = config_from_dict({"train": {"objective": {"da.pearson": 1}}})
    assert cfg.train.objective == {"da.pearson": 1.0}
    terms = cfg.objective_terms()
    assert terms == {"da.pearson": 1.0}
    terms["x.y"] = 2.0
    assert cfg.objective_terms() == {"da.pearson": 1.0}  # a copy, not the config's own dict


def test_objective_naming_a_task_not_enabled_is_an_error() -> None:
    assert one_error({"train": {"objective": {"da.pearson": 1, "hter.pearson": 1}}}) == (
        f"{SRC}: train.objective.hter.pearson: task 'hter' is not enabled; enabled: da")


@pytest.mark.parametrize("key", ["pearson", "da.pearson.x"])
def test_objective_key_must_be_task_dot_metric(key: str) -> None:
    assert one_error({"train": {"objective": {key: 1}}}) == (
        f"{SRC}: train.objective.{key}: must be 'task.metric', e.g. 'da.pearson', got {key!r}")


def test_objective_weight_must_be_a_number() -> None:
    assert one_error({"train": {"objective": {"da.pearson": "high"}}}) == (
        f"{SRC}: train.objective.da.pearson: must be float, got 'high'")


def test_default_objective_terms() -> None:
    cfg = config_from_dict({"tasks": {"da": {}, "word_tags": {}, "mlm": {}}})
    assert cfg.objective_terms() == {"da.pearson": 1.0, "word_tags.all_mcc": 1.0}


def test_default_objective_scales_chrf() -> None:
    cfg = config_from_dict({"tasks": {"hter": {}, "source_tags": {}, "post_edit": {}}})
    assert cfg.objective_terms() == {"hter.pearson": 1.0, "source_tags.mcc": 1.0, "post_edit.chrf": 0.01}


# --- glass-box features ------------------------------------------------------------------------------


def test_features_default_to_none() -> None:
    cfg = config_from_dict({"tasks": {"da": {}, "word_tags": {}}})
    assert cfg.features == FeaturesConfig(sentence="none", sentence_tasks="all", word=False, low_logprob=-1.0)
    assert cfg.feature_inputs() == {} and not cfg.features.needs_logprobs
    assert to_dict(cfg)["features"] == {"sentence": "none", "sentence_tasks": "all", "word": False,
                                         "low_logprob": -1.0}


def test_features_feed_the_heads_asked_for(tmp_path: Path) -> None:
    cfg = config_from_dict({"tasks": {"da": {}, "hter": {}, "word_tags": {}},
                            "features": {"sentence": "model_score", "word": True}})
    assert cfg.feature_inputs() == {"da": ("model_score",), "hter": ("model_score",), "word_tags": ("mt_logprob",)}
    assert cfg.features.needs_logprobs  # the word log-probs come from word-probas/
    only_hter = config_from_dict({"tasks": {"da": {}, "hter": {}},
                                  "features": {"sentence": "logprobs", "sentence_tasks": "hter"}})
    assert list(only_hter.feature_inputs()) == ["hter"] and len(only_hter.feature_inputs()["hter"]) == 5
    dump_config(cfg, tmp_path / "x.yaml")
    assert load_config(tmp_path / "x.yaml") == cfg


@pytest.mark.parametrize(("raw", "message"), [
    ({"tasks": {"word_tags": {}}, "features": {"sentence": "all"}},
     "features.sentence: 'all' feeds the sentence heads da, hter, but neither is enabled; enabled: word_tags"),
    ({"tasks": {"da": {}}, "features": {"sentence": "model_score", "sentence_tasks": "hter"}},
     "features.sentence_tasks: task 'hter' is not enabled (features.sentence 'model_score' would feed it); "
     "enabled: da"),
    ({"tasks": {"da": {}}, "features": {"word": True}},
     "features.word: feeds word_tags, which is not enabled; enabled: da"),
    ({"features": {"low_logprob": 0.5}}, "features.low_logprob: must be < 0 (a log-probability), got 0.5"),
    ({"features": {"sentence": "probs"}}, "features.sentence: must be one of none, model_score, logprobs, all, "
                                          "got 'probs'"),
    ({"features": {"word": "yes"}}, "features.word: must be bool, got 'yes'"),
])
def test_feature_errors_name_the_key(raw: dict[str, Any], message: str) -> None:
    assert one_error(raw) == f"{SRC}: {message}"


def test_feature_errors_are_reported_with_the_others() -> None:
    errors = errors_of({"tasks": {"da": {}}, "features": {"word": True}, "train": {"lr": -1}})
    assert sorted(e.split(": ")[1] for e in errors) == ["features.word", "train.lr"], errors
    # a task section that failed does not invent feature errors
    errors = errors_of({"tasks": {"da": {}, "word_tag": {}}, "features": {"word": True}})
    assert [e.split(": ")[1] for e in errors] == ["tasks.word_tag"], errors


def test_sentence_tasks_without_sentence_features_asks_for_nothing() -> None:
    cfg = config_from_dict({"tasks": {"da": {}}, "features": {"sentence_tasks": "hter"}})
    assert cfg.feature_inputs() == {}


# --- errors found while writing these tests (regressions) -------------------------------------------


def test_failed_tasks_do_not_invent_objective_errors() -> None:
    errors = errors_of({"tasks": {"word_tags": {}, "bogus": {}}, "train": {"objective": {"word_tags.all_mcc": 1}}})
    assert [e.split(": ")[1] for e in errors] == ["tasks.bogus"], errors


def test_failed_model_does_not_invent_post_edit_heads_error() -> None:
    errors = errors_of({"model": {"hidden_size": 96, "num_heads": 5}, "tasks": {"da": {}, "post_edit": {"heads": 3}}})
    assert [e.split(": ")[1] for e in errors] == ["model.hidden_size"], errors


def test_bad_pair_is_reported_beside_another_data_error() -> None:
    errors = errors_of({"data": {"pairs": ["en-de", "xx"], "max_train_samples": "foo"}})
    assert sorted(e.split(": ")[1] for e in errors) == ["data.max_train_samples", "data.pairs[1]"], errors


def test_heads_check_on_default_hidden_size_is_reported_beside_another_error() -> None:
    errors = errors_of({"model": {"num_heads": 5, "word_pooling": "avg"}})
    assert sorted(e.split(": ")[1] for e in errors) == ["model.hidden_size", "model.word_pooling"], errors


def test_override_through_a_scalar_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=rf"^{SRC}: train\.lr: "):
        config_from_dict({"train": 5}, source=SRC, overrides={"train.lr": 0.01})


def test_weighting_arg_int_type_is_checked() -> None:
    with pytest.raises(ConfigError, match=rf"^{SRC}: weighting_args\.period: must be int, got 2\.5$"):
        config_from_dict({"weighting": "dwa", "weighting_args": {"period": 2.5}}, source=SRC)


def test_weighting_arg_integral_float_becomes_int() -> None:
    cfg = config_from_dict({"weighting": "dwa", "weighting_args": {"period": 2.0}})
    assert type(cfg.weighting_args["period"]) is int


@pytest.mark.parametrize("value", ["nan", float("nan")])
def test_nan_learning_rate_is_rejected(value: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^{SRC}: train\.lr: "):
        config_from_dict({"train": {"lr": value}}, source=SRC)


# --- imports (last: the final test imports torch) ---------------------------------------------------


def test_importing_config_imports_nothing_heavy() -> None:
    code = "import mtl.config, sys; print('torch' in sys.modules, 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_weighting_options_match_the_strategy_constructors() -> None:
    import inspect

    from mtl.weighting import WEIGHTINGS

    for name, row in WEIGHTINGS.items():
        params = inspect.signature(row.load().__init__).parameters
        options = {p.name for p in params.values() if p.kind is inspect.Parameter.KEYWORD_ONLY} - {
            "init_weights", "shared_params"}
        assert options == set(row.options), name
        for key, option in row.options.items():  # each option's type is its constructor default's
            assert type(params[key].default) is option.type, (name, key)

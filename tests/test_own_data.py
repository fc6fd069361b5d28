"""Your own data in, quality scores out: table datasets (TSV, JSON lines, Parquet) with partial
labels, releases in MLQE-PE's layout with other names, training and searching over them, and
`mtl predict` on new, unlabelled translations."""

from __future__ import annotations

import json
import math
import tarfile
from pathlib import Path

import pytest
import yaml

from mtl.data.mlqe import MlqeSource, read_pair
from mtl.data.parse import IGNORE, DataError
from mtl.data.tables import TableSource, read_file
from tests.conftest import tiny_raw
from tests.own_data_fixtures import own_datasets, segments, write_tsv


@pytest.fixture(scope="module")
def tables(tmp_path_factory, data_root) -> dict[str, dict]:
    return own_datasets(tmp_path_factory.mktemp("own"), data_root)


def _source(entry: dict) -> TableSource:
    return TableSource(**{k: v for k, v in entry.items() if k != "source"})


# --- reading --------------------------------------------------------------------------------------


def test_each_format_reads_with_its_partial_labels(tables, data_root):
    gold = segments(data_root, "en-de", "dev", 24)
    team = _source(tables["team"]).read("team", "dev")
    assert [r["src"] for r in team] == [g["src"] for g in gold] and [r["mt"] for r in team] == [g["mt"] for g in gold]
    assert [r["da"] for r in team] == [None if i % 3 == 0 else g["da"] for i, g in enumerate(gold)]
    assert [r["mt_tags"] for r in team] == [None if i % 4 == 0 else g["mt_tags"] for i, g in enumerate(gold)]
    assert [r["pe"] for r in team] == [g["pe"] if i % 2 else None for i, g in enumerate(gold)]
    assert team[5]["id"] == "s5" and team[5]["lp"] == "en-de" and team[5]["pair"] == "team"

    vendor = _source(tables["vendor"]).read("vendor", "dev")
    ro = segments(data_root, "ro-en", "dev", 20)
    assert len(vendor) == 20 and vendor[0]["lp"] == "ro-en" and vendor[1]["da"] is None
    # word tags without gaps: the gaps are not given, so they are ignored (never read as OK)
    assert vendor[0]["mt_tags"][1::2] == ro[0]["mt_tags"][1::2]
    assert set(vendor[0]["mt_tags"][0::2]) == {IGNORE}

    pq = _source(tables["pq"]).read("pq", "train")
    assert len(pq) == 40 and pq[0]["src_tags"] == segments(data_root, "en-de", "train", 1)[0]["src_tags"]
    assert pq[0]["mt_tags"] is None and pq[0]["lp"] == "pq"


def _bad(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "src\tmt\tda\tmt_tags\n"


@pytest.mark.parametrize(("name", "text", "columns", "says"), [
    ("nan.tsv", HEADER + "a b\tx y\t0.5\t\nc\td\tabc\t\n", {}, r"nan.tsv: row 2, column 'da': da 'abc' is not a number"),
    ("inf.tsv", HEADER + "a b\tx y\tinf\t\n", {}, r"row 1, column 'da': da 'inf' is not finite"),
    ("tags.tsv", HEADER + "a b\tx y\t\tOK OK OK OK\n", {},
     r"row 1, column 'mt_tags': got 4 tags for 2 MT words, expected 5 or 2"),
    ("tag.tsv", HEADER + "a b\tx y\t\tOK GOOD\n", {}, r"row 1, column 'mt_tags': tag 'GOOD', expected OK or BAD"),
    ("empty-mt.tsv", HEADER + "a b\t \t1\t\n", {}, r"row 1, column 'mt': empty segment, expected at least one word"),
    ("fields.tsv", HEADER + "a b\tx y\n", {}, r"fields.tsv: row 1: got 2 fields, expected 4 as in the header"),
    ("renamed.tsv", HEADER + "a\tb\t1\t\n", {"src": "source"},
     r"renamed.tsv: no column 'source' \(src: the source sentence \(required\)\)"),
    ("bad.jsonl", '{"src": "a", "mt": "b"}\n{"src": "a", \n', {}, r"bad.jsonl: row 2: not JSON"),
    ("list.jsonl", '["a", "b"]\n', {}, r"list.jsonl: row 1: got list, expected a JSON object"),
    ("nomt.jsonl", '{"src": "a"}\n', {}, r"nomt.jsonl: row 1, column 'mt': no such column, expected one of src"),
    ("empty.tsv", "", {}, r"empty.tsv: empty file, expected a header line"),
    ("latin1.tsv", None, {}, r"latin1.tsv: not UTF-8 text"),
])
def test_a_bad_table_names_file_row_and_column(tmp_path, name, text, columns, says):
    if text is None:
        path = tmp_path / name
        path.write_bytes(HEADER.encode() + "caf\xe9\tx\t1\t\n".encode("latin-1"))
    else:
        path = _bad(tmp_path, name, text)
    with pytest.raises(DataError, match=says):
        list(read_file(path, columns=columns))


def test_a_bad_dataset_config_or_split_is_named(tmp_path, tables):
    from mtl.config import config_from_dict
    from mtl.config_loader import ConfigError

    with pytest.raises(ConfigError) as e:
        config_from_dict({"data": {"pairs": ["mine"], "datasets": {
            "mine": {"source": "table", "splits": {"train": "t.xlsx"}, "columns": {"score": "x"}}}},
            "tasks": {"da": {}}}, source="cfg.yaml")
    assert str(e.value).splitlines() == [
        "cfg.yaml: data.datasets.mine.columns.score: unknown field 'score'; valid: id, src, mt, pe, da, hter, "
        "model_score, mt_tags, src_tags, nmt_tokens, nmt_logprobs",
        "cfg.yaml: data.datasets.mine.format: cannot tell the format of 't.xlsx' from its suffix; name it .tsv, .csv, "
        ".jsonl or .parquet, or set format"]
    vendor = _source(tables["vendor"])
    with pytest.raises(DataError, match=r"all.jsonl: no segment of the test split of dataset 'vendor' \(column "
                                        r"'split' holds: dev, train\)"):
        vendor.read("vendor", "test")
    with pytest.raises(DataError, match=r"dataset 'team': no test split; its splits: train, dev"):
        _source(tables["team"]).read("team", "test")


def test_a_release_in_mlqe_layout_with_other_names_reads_through_options(tmp_path, data_root):
    """A later release keeping MLQE-PE's file families (extracted folders, renamed columns and
    suffixes, another pair) is read by the same reader's options."""
    gold = read_pair(data_root, "en-de", "dev")[:5]
    root = tmp_path / "wmt-new"
    da = root / "sentence-scores" / "dev" / "en-mr-dev"
    da.mkdir(parents=True)
    (da / "scores.tsv").write_text("index\tsource\ttarget\tmean_score\tnmt_score\n" + "".join(
        f"{i}\t{' '.join(g['src'])}\t{' '.join(g['mt'])}\t{g['da']}\t{g['model_score']}\n" for i, g in enumerate(gold)))
    pe = root / "post-editing" / "dev" / "en-mr-dev"
    pe.mkdir(parents=True)
    (pe / "dev.source").write_text("".join(" ".join(g["src"]) + "\n" for g in gold))
    (pe / "dev.target").write_text("".join(" ".join(g["mt"]) + "\n" for g in gold))
    (pe / "dev.tags").write_text("".join(" ".join("BAD" if t else "OK" for t in g["mt_tags"]) + "\n" for g in gold))
    source = MlqeSource(root=str(root), pair="en-mr", da_folder="sentence-scores",
                        da_columns={"src": "source", "mt": "target", "da": "mean_score", "model_score": "nmt_score"},
                        pe_suffixes={"src": "source", "mt": "target"})
    rows = source.read("wmt-en-mr", "dev")
    assert [(r["src"], r["mt"], r["da"], r["mt_tags"]) for r in rows] == \
        [(g["src"], g["mt"], g["da"], g["mt_tags"]) for g in gold]
    assert rows[0]["lp"] == "en-mr" and rows[0]["hter"] is None
    # the same release as tarballs reads the same
    for folder in (da, pe):
        with tarfile.open(f"{folder}.tar.gz", "w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    assert source.read("wmt-en-mr", "dev") == rows


# --- training and searching -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_run(tmp_path_factory, tables, data_root, cache_dir):
    """A tiny run trained on the three datasets jointly (da, hter, word and source tags)."""
    from mtl.config import config_from_dict
    from mtl.train import train

    raw = tiny_raw(data_root, cache_dir, tasks={"da": {}, "hter": {}, "word_tags": {}, "source_tags": {}},
                   train={"max_steps": 8, "eval_every": 4})
    raw["data"].update(pairs=["team", "vendor", "pq"], datasets=tables)
    out = tmp_path_factory.mktemp("own-run") / "run"
    result = train(config_from_dict(raw, source="own"), out_dir=out)
    return out, result


def test_training_on_tables_scores_each_dataset_on_its_labelled_rows(own_run):
    out, result = own_run
    metrics = result["metrics"]
    assert set(metrics) == {"team", "vendor", "pq"}
    assert set(metrics["team"]) == {"da", "hter", "word_tags", "source_tags"}
    assert set(metrics["vendor"]) == {"da", "word_tags"}  # no hter or source tags in that file
    assert set(metrics["pq"]) == {"da", "hter", "source_tags"}
    assert all(math.isfinite(v) for v in (metrics["team"]["da"]["pearson"], metrics["vendor"]["da"]["pearson"]))
    # the gaps the vendor file does not tag are not scored: its gap metrics are undefined
    assert math.isnan(metrics["vendor"]["word_tags"]["gaps_mcc"])
    da = (out / "predictions" / "team.dev" / "da" / "predictions.txt").read_text().splitlines()
    assert len(da) == 24 and da[0].split("\t")[:3] == ["en-de", "mtl", "0"]
    mt = (out / "predictions" / "vendor.dev" / "word" / "predictions_mt.txt").read_text().splitlines()
    assert mt[0].split("\t")[:3] == ["ro-en", "mtl", "mt"]


def test_a_dataset_that_tags_words_but_not_gaps_trains_the_word_tags(tmp_path, tables, data_root, cache_dir):
    # Its batches label MT words and no gap: the gap term is left out, not a mean over nothing
    # (found by finalize: every vendor-only batch made the word_tags loss NaN at step 1)
    from mtl.config import config_from_dict
    from mtl.train import train

    raw = tiny_raw(data_root, cache_dir, tasks={"da": {}, "word_tags": {}}, train={"max_steps": 4, "eval_every": 4})
    raw["data"].update(pairs=["vendor"], datasets=tables)
    result = train(config_from_dict(raw, source="vendor only"), out_dir=tmp_path / "run")
    words = result["metrics"]["vendor"]["word_tags"]
    assert math.isfinite(words["words_mcc"]) and math.isnan(words["gaps_mcc"])


def test_a_task_no_training_segment_has_a_label_for_is_refused(tmp_path, tables, data_root, cache_dir):
    from mtl.cli import main
    from tests.cli_probe import call

    raw = tiny_raw(data_root, cache_dir, tasks={"da": {}, "post_edit": {"layers": 1}})
    raw["data"].update(pairs=["vendor"], datasets=tables)  # the vendor file has no post-edits
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(raw))
    call(main, ["train", "--config", str(config), "--out", str(tmp_path / "run")]).check(
        code=2, says=r"tasks.post_edit: none of the 48 train segments of vendor has a pe label, expected some: give "
                     r"the data one \(a column 'pe' of a table\) or remove the task")


def test_a_search_compares_configs_across_table_datasets(tmp_path, tables, data_root, cache_dir):
    from reports.__main__ import main as report
    from search.run import main
    from tests.search_fixtures import space_file, study_of

    space = space_file(tmp_path, data_root, cache_dir, trials=2, name="own",
                       extra={"datasets": {"pairs": ["team", "vendor"], "mode": "joint"},
                              "search": {"train.lr": {"type": "categorical", "choices": [1e-3, 3e-3]}},
                              "weights": None, "scheduler": {"name": "fifo"}, "sampler": {"name": "grid"}})
    raw = yaml.safe_load(space.read_text())
    raw["base"]["data"]["datasets"] = tables
    space.write_text(yaml.safe_dump(raw))
    assert main(["--space", str(space), "--max-concurrent", "1"]) == 0
    trials = study_of(space, "own").get_trials()
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:
        assert set(t.user_attrs["pair_scores"]["objective"]) == {"team", "vendor"}
    page = tmp_path / "report"
    assert report(["build", "--storage", f"sqlite:///{tmp_path / 'studies' / 'own'}.db", "--study", "own",
                   "--out", str(page)]) == 0
    html = (page / "index.html").read_text()
    assert "team" in html and "vendor" in html
    assert "no floor" not in html  # both tables carry the NMT model_score: the floor is computed from them


def test_a_space_naming_an_undeclared_dataset_says_which_exist(tmp_path, tables, data_root, cache_dir):
    from search.space import SpaceError, load_space
    from tests.search_fixtures import space_file

    space = space_file(tmp_path, data_root, cache_dir, extra={"datasets": {"pairs": ["team", "customer"]}})
    raw = yaml.safe_load(space.read_text())
    raw["base"]["data"]["datasets"] = tables
    space.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpaceError, match=r"datasets.pairs\[1\]: must look like 'en-de' \(two lowercase language "
                                         r"codes\), got 'customer'; or name a dataset of base.data.datasets: pq, "
                                         r"team, vendor"):
        load_space(space)


# --- predicting new translations ---------------------------------------------------------------------


def _predict(*args: str) -> int:
    from mtl.cli import main

    return main(["predict", *args])


def _tsv(path: Path) -> list[dict[str, str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def test_predict_scores_an_unlabelled_table_like_the_trainer_did(own_run, tables, tmp_path, data_root):
    run, _ = own_run
    dev = segments(data_root, "en-de", "dev", 24)
    new = write_tsv(tmp_path / "new.tsv", [{"id": f"n{i}", "src": " ".join(r["src"]), "mt": " ".join(r["mt"])}
                                           for i, r in enumerate(dev)])
    assert _predict("--run", str(run), "--input", str(new), "--out", str(tmp_path / "p")) == 0
    rows = _tsv(tmp_path / "p" / "predictions.tsv")
    assert [r["id"] for r in rows] == [f"n{i}" for i in range(24)]
    assert list(rows[0]) == ["id", "da", "hter", "mt_tags", "mt_bad", "gap_tags", "gap_bad", "src_tags", "src_bad"]
    for r, segment in zip(rows, dev):
        assert len(r["mt_tags"].split()) == len(r["mt_bad"].split()) == len(segment["mt"])
        assert len(r["gap_tags"].split()) == len(segment["mt"]) + 1
        assert len(r["src_tags"].split()) == len(segment["src"])
        for tag, p in zip(r["mt_tags"].split(), map(float, r["mt_bad"].split())):
            # a word cut by max_length: tagged OK, P(BAD) unknown
            assert (tag == "OK" and math.isnan(p)) or (0.0 <= p <= 1.0 and (tag == "BAD") == (p > 0.5))
    # the same segments, the same scores as the run's own predictions of that split, at full precision
    trained = [float(line.split("\t")[3]) for line in
               (run / "predictions" / "team.dev" / "da" / "predictions.txt").read_text().splitlines()]
    assert [float(r["da"]) for r in rows] == pytest.approx(trained, abs=1e-6)
    assert any(len(r["da"].split(".")[-1]) > 6 for r in rows)

    # JSON lines; and line-aligned text files (no id: the line number)
    assert _predict("--run", str(run), "--input", str(new), "--out", str(tmp_path / "j"), "--format", "jsonl") == 0
    records = [json.loads(line) for line in (tmp_path / "j" / "predictions.jsonl").read_text().splitlines()]
    assert records[3]["id"] == "n3" and records[3]["da"] == float(rows[3]["da"])
    assert len(records[3]["mt_bad"]) == len(dev[3]["mt"])
    src, mt = tmp_path / "src.txt", tmp_path / "mt.txt"
    src.write_text("".join(" ".join(r["src"]) + "\n" for r in dev), encoding="utf-8")
    mt.write_text("".join(" ".join(r["mt"]) + "\n" for r in dev), encoding="utf-8")
    assert _predict("--run", str(run), "--src", str(src), "--mt", str(mt), "--out", str(tmp_path / "t")) == 0
    text_rows = _tsv(tmp_path / "t" / "predictions.tsv")
    assert [r["id"] for r in text_rows] == [str(i + 1) for i in range(24)]
    assert [r["da"] for r in text_rows] == [r["da"] for r in rows]


def test_predict_writes_the_official_wmt20_layout(own_run, tmp_path, data_root):
    """What the WMT20 scorers read: sentence files of 4 fields; word files of 7 fields whose words,
    per segment id, are the MT (source) words in order, and n+1 gaps."""
    run, _ = own_run
    dev = read_pair(data_root, "en-de", "dev")[:10]
    src, mt = tmp_path / "src.txt", tmp_path / "mt.txt"
    src.write_text("".join(" ".join(r["src"]) + "\n" for r in dev), encoding="utf-8")
    mt.write_text("".join(" ".join(r["mt"]) + "\n" for r in dev), encoding="utf-8")
    out = tmp_path / "sub"
    assert _predict("--run", str(run), "--src", str(src), "--mt", str(mt), "--out", str(out), "--format", "wmt20") == 0
    for task in ("da", "hter"):
        lines = [line.split("\t") for line in (out / task / "predictions.txt").read_text().splitlines()]
        assert [len(f) for f in lines] == [4] * 10 and [f[2] for f in lines] == [str(i) for i in range(10)]
    for name, side, gaps in (("predictions_mt.txt", "mt", False), ("predictions_gaps.txt", "mt", True),
                             ("predictions_src.txt", "src", False)):
        words: dict[int, list[str]] = {}
        for line in (out / "word" / name).read_text().splitlines():
            fields = line.split("\t")
            assert len(fields) == 7 and fields[6] in ("OK", "BAD")
            words.setdefault(int(fields[3]), []).append(fields[5])
        for i, r in enumerate(dev):
            assert len(words[i]) == len(r[side]) + 1 if gaps else words[i] == r[side]


def test_predict_refuses_mistakes_before_writing_anything(own_run, tmp_path):
    run, _ = own_run
    out = tmp_path / "p"
    bad = write_tsv(tmp_path / "bad.tsv", [{"src": "a b", "mt": "x y"}, {"src": "c", "mt": " "}])
    assert _predict("--run", str(run), "--input", str(bad), "--out", str(out)) == 2
    assert not (out / "predictions.tsv").exists() and not list(out.glob(".*"))  # no half file left either
    renamed = write_tsv(tmp_path / "renamed.tsv", [{"source": "a b", "target": "x y"}])
    assert _predict("--run", str(run), "--input", str(renamed), "--out", str(out)) == 2
    assert _predict("--run", str(run), "--input", str(renamed), "--out", str(out),
                    "--columns", "src=source,mt=target") == 0
    assert _predict("--run", str(run), "--input", str(renamed), "--out", str(out),
                    "--columns", "src=source,mt=target") == 2  # a second run does not overwrite the first
    assert _predict("--run", str(run), "--input", str(renamed), "--out", str(out),
                    "--columns", "src=source,mt=target", "--overwrite") == 0


def test_predict_asks_a_glass_box_model_for_the_nmt_outputs(tmp_path, tiny, data_root):
    """A model trained with glass-box features names what it needs, and predicts with it (its
    post-edit head writes a post-edit per segment)."""
    from mtl.cli import main
    from mtl.config import dump_config
    from tests.cli_probe import call

    config = tmp_path / "gb.yaml"
    dump_config(tiny(features={"sentence": "all"}, tasks={"da": {}, "post_edit": {"layers": 1, "max_length": 24}},
                     train={"max_steps": 2, "eval_every": 2}), config)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    dev = read_pair(data_root, "en-de", "dev", word_probas=True)[:6]
    files = {}
    for key, lines in (("src", [" ".join(r["src"]) for r in dev]), ("mt", [" ".join(r["mt"]) for r in dev]),
                       ("tok", [" ".join(r["nmt_tokens"]) for r in dev]),
                       ("lp", [" ".join(map(repr, r["nmt_logprobs"])) for r in dev]),
                       ("ms", [repr(r["model_score"]) for r in dev])):
        files[key] = tmp_path / f"{key}.txt"
        files[key].write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["predict", "--run", str(run), "--src", str(files["src"]), "--mt", str(files["mt"]), "--out",
            str(tmp_path / "p")]
    call(main, base).check(code=2, says=r"pass --model-scores: the run's glass-box features model_score read "
                                             r"the NMT system's sentence score \(features.sentence=all\); pass "
                                             r"--mt-tokens and --mt-logprobs: the run's glass-box features lp_mean")
    table = write_tsv(tmp_path / "t.tsv", [{"src": " ".join(r["src"]), "mt": " ".join(r["mt"])} for r in dev])
    call(main, ["predict", "--run", str(run), "--input", str(table), "--out", str(tmp_path / "q")]).check(
        code=2, says=r"t.tsv: no column 'model_score' \(model_score: the run's glass-box features model_score read")
    full = [*base, "--mt-tokens", str(files["tok"]), "--mt-logprobs", str(files["lp"]), "--model-scores",
            str(files["ms"])]
    assert main(full) == 0
    rows = _tsv(tmp_path / "p" / "predictions.tsv")
    assert len(rows) == 6 and list(rows[0]) == ["id", "da", "post_edit"]
    assert all(math.isfinite(float(r["da"])) for r in rows)


def test_the_readme_path_from_a_tsv_to_scores(tmp_path, data_root):
    """The README's two commands, as written there, on TSVs a user made (fresh processes)."""
    from tests.cli_probe import run
    from tests.search_fixtures import REPO, ray_env

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    train_cmd = "python -m mtl train --config examples/own-data.yaml --out runs/mine"
    predict_cmd = "python -m mtl predict --run runs/mine --input new.tsv --out scores/"
    assert train_cmd in readme and predict_cmd in readme
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "own-data.yaml").write_text((REPO / "examples" / "own-data.yaml").read_text())
    train, dev = segments(data_root, "en-de", "train", 200), segments(data_root, "en-de", "dev", 40)
    for name, rows in (("train", train), ("dev", dev)):
        write_tsv(tmp_path / "my-data" / f"{name}.tsv",
                  [{"src": " ".join(r["src"]), "mt": " ".join(r["mt"]), "da": r["da"]} for r in rows])
    write_tsv(tmp_path / "new.tsv", [{"src": " ".join(r["src"]), "mt": " ".join(r["mt"])} for r in dev[:7]])
    env = {**ray_env(), "MTL_CACHE": str(tmp_path / "cache")}
    trained = run("mtl", [*train_cmd.split()[3:], "--set", "train.epochs=1"], cwd=tmp_path, env=env)
    assert trained.code == 0, trained.err
    predicted = run("mtl", predict_cmd.split()[3:], cwd=tmp_path, env=env)
    assert predicted.code == 0, predicted.err
    rows = _tsv(tmp_path / "scores" / "predictions.tsv")
    assert [r["id"] for r in rows] == [str(i) for i in range(1, 8)] and all(math.isfinite(float(r["da"])) for r in rows)

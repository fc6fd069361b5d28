"""`python -m mtl` as a hostile user tries it: every mistake is one message naming the file, key
or line, exit code 2, no traceback, in seconds, and no file of an existing run changes. Then the
data-safety probes: a run directory of another config, a cut history, a resume state from elsewhere."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mtl.cli import main
from mtl.config_loader import set_dotted
from tests.cli_probe import call, snapshot
from tests.conftest import tiny_raw
from tests.mlqe_fixtures import DA, HEADER, PE, TSV, changed, write_tar


@dataclass
class Ctx:
    tmp: Path
    data: Path
    cache: Path
    run: Path

    def config(self, name: str = "cfg.yaml", **keys: Any) -> str:
        """A tiny trainer config with dotted ``keys`` set (``tasks__hter`` style for dots)."""
        raw = tiny_raw(self.data, self.cache)
        for key, value in keys.items():
            set_dotted(raw, key.replace("__", "."), value)
        path = self.tmp / name
        path.write_text(yaml.safe_dump(raw), encoding="utf-8")
        return str(path)

    def text(self, name: str, text: str | bytes) -> str:
        path = self.tmp / name
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)  # type: ignore[operator]
        return str(path)

    def bad_root(self, name: str, *, da: dict | None = DA, pe: dict | None = PE, cut: bool = False) -> str:
        """A synthetic data root with pair aa-bb (train = dev), its tarballs as given."""
        root = self.tmp / name
        for split in ("train", "dev"):
            for folder, members in (("direct-assessments", da), ("post-editing", pe)):
                (root / folder / split).mkdir(parents=True, exist_ok=True)
                if members is not None:
                    renamed = {k.replace("dev", split): v for k, v in members.items()}
                    write_tar(root / folder / split / f"aa-bb-{split}.tar.gz", renamed)
        if cut:
            tarball = root / "post-editing" / "train" / "aa-bb-train.tar.gz"
            tarball.write_bytes(tarball.read_bytes()[: len(tarball.read_bytes()) // 2])
        return str(root)

    def run_copy(self, name: str, edit: Callable[[Path], None]) -> str:
        copy = self.tmp / name
        shutil.copytree(self.run, copy)
        edit(copy)
        return str(copy)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data_root: Path, cache_dir: Path) -> Path:
    """One tiny trained run directory that every probe must leave as it is."""
    from mtl.config import config_from_dict
    from mtl.train import train

    run = tmp_path_factory.mktemp("trained") / "run"
    train(config_from_dict(tiny_raw(data_root, cache_dir), source="tiny"), out_dir=run)
    return run


@pytest.fixture
def ctx(tmp_path: Path, data_root: Path, cache_dir: Path, trained: Path) -> Ctx:
    return Ctx(tmp_path, data_root, cache_dir, trained)


def _cut(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


Case = tuple[str, Callable[[Ctx], list[str]], str]
TRAIN: list[Case] = [
    ("config-missing", lambda c: ["train", "--config", f"{c.tmp}/nope.yaml", "--out", f"{c.tmp}/o"],
     r"nope\.yaml: no such file"),
    ("config-is-a-folder", lambda c: ["train", "--config", str(c.tmp), "--out", f"{c.tmp}/o"],
     r": is a directory, expected a trainer config"),
    ("config-not-utf8", lambda c: ["train", "--config", c.text("latin.yaml", b"train:\n  lr: 1e-3 # caf\xe9\n"),
                                   "--out", f"{c.tmp}/o"], r"latin\.yaml: line 2: not UTF-8"),
    ("config-bad-yaml", lambda c: ["train", "--config", c.text("b.yaml", "train: {lr: 1\n"), "--out", f"{c.tmp}/o"],
     r"b\.yaml: not valid YAML: line 2"),
    ("config-duplicate-key", lambda c: ["train", "--config", c.text("d.yaml", "train: {lr: 1}\ntrain: {lr: 2}\n"),
                                        "--out", f"{c.tmp}/o"], r"d\.yaml: .*key 'train' is written twice"),
    ("config-a-list", lambda c: ["train", "--config", c.text("l.yaml", "- da\n"), "--out", f"{c.tmp}/o"],
     r"l\.yaml: the top level must be a mapping, got list"),
    ("unknown-section", lambda c: ["train", "--config", c.text("u.yaml", "modle: {}\n"), "--out", f"{c.tmp}/o"],
     r"u\.yaml: modle: unknown key for the config; did you mean 'model'"),
    ("unknown-backbone", lambda c: ["train", "--config", c.config(model__backbone="bart-large-xyz"),
                                    "--out", f"{c.tmp}/o"], r"cfg\.yaml: model\.backbone: unknown 'bart-large-xyz'.*valid: bert, roberta, xlnet"),
    ("pretrained-missing-folder", lambda c: ["train", "--config", c.config(model__pretrained=f"{c.tmp}/no-model"),
                                             "--out", f"{c.tmp}/o"], r"model\.pretrained: .*no such folder"),
    ("pretrained-a-file", lambda c: ["train", "--config", c.config(model__pretrained=c.text("w.bin", "x")),
                                     "--out", f"{c.tmp}/o"], r"model\.pretrained: .*is a file"),
    ("pretrained-without-config", lambda c: ["train", "--config", c.config(model__pretrained=str(c.tmp)),
                                             "--out", f"{c.tmp}/o"], r"model\.pretrained: .*no config\.json"),
    ("pair-not-in-data", lambda c: ["train", "--config", c.config(data__pairs=["xx-yy"]), "--out", f"{c.tmp}/o"],
     r"data\.pairs\[0\]: no tarball for xx-yy train.*pairs with a train split: en-de"),
    ("data-missing", lambda c: ["train", "--config", c.config(), "--data", f"{c.tmp}/nodata", "--out", f"{c.tmp}/o"],
     r"data\.root: .*nodata: not a directory"),
    ("data-a-file", lambda c: ["train", "--config", c.config(), "--data", c.text("f.txt", "x"), "--out", f"{c.tmp}/o"],
     r"data\.root: .*f\.txt: not a directory"),
    ("objective-misspelt-metric", lambda c: ["train", "--config", c.config(train__objective={"da.pearsn": 1}),
                                             "--out", f"{c.tmp}/o"],
     r"train\.objective\.da\.pearsn: task 'da' reports no metric 'pearsn'; did you mean 'pearson'"),
    ("objective-task-off", lambda c: ["train", "--config", c.config(train__objective={"hter.pearson": 1}),
                                      "--out", f"{c.tmp}/o"], r"train\.objective\.hter\.pearson: task 'hter' is not enabled"),
    ("weighting-misspelt", lambda c: ["train", "--config", c.config(weighting="gradnrom"), "--out", f"{c.tmp}/o"],
     r"weighting: unknown 'gradnrom'; did you mean 'gradnorm'"),
    ("weighting-arg-range", lambda c: ["train", "--config", c.config(weighting="dwa",
                                                                    weighting_args={"temperature": -1}),
                                       "--out", f"{c.tmp}/o"], r"weighting_args\.temperature: must be > 0, got -1"),
    ("set-bad-yaml", lambda c: ["train", "--config", c.config(), "--set", "train.lr=[1e-3", "--out", f"{c.tmp}/o"],
     r"--set: train\.lr: value '\[1e-3' is not valid YAML"),
    ("set-without-equals", lambda c: ["train", "--config", c.config(), "--set", "train.lr", "--out", f"{c.tmp}/o"],
     r"--set: train\.lr: expected KEY=VALUE"),
    ("set-unknown-key", lambda c: ["train", "--config", c.config(), "--set", "train.lrr=1", "--out", f"{c.tmp}/o"],
     r"train\.lrr: unknown key for train; did you mean 'lr'"),
    ("out-is-a-file", lambda c: ["train", "--config", c.config(), "--out", c.text("out.txt", "x")],
     r"--out .*out\.txt: is a file"),
    ("device-cuda-without-one", lambda c: ["train", "--config", c.config(train__device="cuda"), "--out", f"{c.tmp}/o"],
     r"train\.device: cuda was asked for, but torch sees no CUDA device"),
    ("run-dir-of-another-config", lambda c: ["train", "--config", c.config(train__lr=0.5), "--out", str(c.run)],
     r"holds a run of another config .*--overwrite"),
    ("cut-tarball", lambda c: ["train", "--config", c.config(data__pairs=["aa-bb"], data__root=c.bad_root("r", cut=True)),
                               "--out", f"{c.tmp}/o"], r"aa-bb-train\.tar\.gz: cannot read it .*gzip-compressed tar"),
    ("da-without-z_mean", lambda c: ["train", "--config", c.config(
        data__pairs=["aa-bb"], data__root=c.bad_root("r", da={**DA, TSV: DA[TSV].replace("z_mean", "zmean")})),
        "--out", f"{c.tmp}/o"], r"aa-bb-train\.tar\.gz: .*line 1: header lacks z_mean"),
    ("tags-one-line-short", lambda c: ["train", "--config", c.config(
        data__pairs=["aa-bb"], data__root=c.bad_root("r", pe=changed(PE, {"aa-bb-dev/dev.tags": "OK BAD OK OK OK\n"}))),
        "--out", f"{c.tmp}/o"], r"\.tags: line 2: 1 lines but .* has 2"),
    ("empty-split", lambda c: ["train", "--config", c.config(
        data__pairs=["aa-bb"], data__root=c.bad_root("r", da={TSV: HEADER}, pe=None)), "--out", f"{c.tmp}/o"],
     r"aa-bb-train\.tar\.gz: no segment in aa-bb train"),
]

EVALUATE: list[Case] = [
    ("run-missing", lambda c: ["evaluate", "--run", f"{c.tmp}/none"], r"--run .*none: no such folder"),
    ("run-without-checkpoint", lambda c: ["evaluate", "--run", str(c.tmp)], r"no checkpoint/ folder"),
    ("split-misspelt", lambda c: ["evaluate", "--run", str(c.run), "--split", "tset"],
     r"no split 'tset' \(looked for direct-assessments/tset"),
    ("pair-not-in-data", lambda c: ["evaluate", "--run", str(c.run), "--pair", "xx-yy"],
     r"no tarball for xx-yy dev.*pairs with a dev split"),
    ("max-samples-negative", lambda c: ["evaluate", "--run", str(c.run), "--max-samples", "-5"],
     r"--max-samples: must be >= 0, got -5"),
    ("data-missing", lambda c: ["evaluate", "--run", str(c.run), "--data", f"{c.tmp}/nodata"],
     r"nodata: not a directory"),
    ("device-cuda", lambda c: ["evaluate", "--run", str(c.run), "--device", "cuda"], r"torch sees no CUDA device"),
    ("weights-cut", lambda c: ["evaluate", "--run", c.run_copy("cut", lambda r: _cut(r / "checkpoint" / "model.safetensors"))],
     r"checkpoint: cannot load its weights"),
    ("heads-cut", lambda c: ["evaluate", "--run", c.run_copy("heads", lambda r: _cut(r / "checkpoint" / "heads.safetensors"))],
     r"heads\.safetensors: cannot load the task heads"),
    ("checkpoint-without-config", lambda c: ["evaluate", "--run", c.run_copy(
        "nocfg", lambda r: (r / "checkpoint" / "run_config.yaml").unlink())], r"not an mtl checkpoint folder"),
]

PREDICT: list[Case] = [
    ("pair-not-in-data", lambda c: ["predict", "--run", str(c.run), "--pair", "xx-yy", "--out", f"{c.tmp}/p"],
     r"no tarball for xx-yy dev"),
    ("split-misspelt", lambda c: ["predict", "--run", str(c.run), "--pair", "en-de", "--split", "tset",
                                  "--out", f"{c.tmp}/p"], r"no split 'tset'"),
    ("run-missing", lambda c: ["predict", "--run", f"{c.tmp}/none", "--pair", "en-de", "--out", f"{c.tmp}/p"],
     r"no such folder"),
    ("out-is-a-file", lambda c: ["predict", "--run", str(c.run), "--pair", "en-de", "--out", c.text("p.txt", "x")],
     r"--out .*p\.txt: is a file, expected a folder"),
    ("max-samples-negative", lambda c: ["predict", "--run", str(c.run), "--pair", "en-de", "--max-samples", "-1",
                                        "--out", f"{c.tmp}/p"], r"--max-samples: must be >= 0"),
    ("no-input", lambda c: ["predict", "--run", str(c.run), "--out", f"{c.tmp}/p"],
     r"give one of --input FILE, --src FILE --mt FILE, --pair NAME; got none"),
    ("two-inputs", lambda c: ["predict", "--run", str(c.run), "--pair", "en-de", "--input", c.text("i.tsv", "src\tmt\n"),
                              "--out", f"{c.tmp}/p"], r"give one of .*; got --input, --pair"),
    ("src-without-mt", lambda c: ["predict", "--run", str(c.run), "--src", c.text("s.txt", "a\n"), "--out",
                                  f"{c.tmp}/p"], r"--src and --mt go together"),
    ("input-missing", lambda c: ["predict", "--run", str(c.run), "--input", f"{c.tmp}/none.tsv", "--out", f"{c.tmp}/p"],
     r"none\.tsv: no such file"),
    ("input-unknown-format", lambda c: ["predict", "--run", str(c.run), "--input", c.text("in.xlsx", "x"), "--out",
                                        f"{c.tmp}/p"], r"in\.xlsx: cannot tell the format from the suffix"),
    ("columns-unknown-field", lambda c: ["predict", "--run", str(c.run), "--input", c.text("i.tsv", "src\tmt\n"),
                                         "--columns", "source=src", "--out", f"{c.tmp}/p"],
     r"--columns source: unknown field; valid: id, src, mt"),
    ("columns-malformed", lambda c: ["predict", "--run", str(c.run), "--input", c.text("i.tsv", "src\tmt\n"),
                                     "--columns", "src", "--out", f"{c.tmp}/p"], r"--columns 'src': expected FIELD=COLUMN"),
    ("lines-differ", lambda c: ["predict", "--run", str(c.run), "--src", c.text("s.txt", "a b\nc d\n"), "--mt",
                                c.text("m.txt", "x y\n"), "--out", f"{c.tmp}/p"],
     r"m\.txt: 1 lines but .*s\.txt has more, expected one line per segment"),
    ("empty-line", lambda c: ["predict", "--run", str(c.run), "--src", c.text("s.txt", "a b\n\n"), "--mt",
                              c.text("m.txt", "x y\nz\n"), "--out", f"{c.tmp}/p"],
     r"s\.txt: line 2: empty segment, expected at least one word"),
]


@pytest.mark.parametrize("name, argv, says", TRAIN + EVALUATE + PREDICT, ids=[
    f"{group}-{case[0]}" for group, cases in (("train", TRAIN), ("evaluate", EVALUATE), ("predict", PREDICT))
    for case in cases])
def test_a_mistake_is_one_message_and_exit_2(ctx, name, argv, says):
    before = snapshot(ctx.run)
    ctx.tmp.joinpath("o").mkdir(exist_ok=True)
    answer = call(main, argv(ctx))
    answer.check(code=2, says=says)
    assert snapshot(ctx.run) == before, "a file of the existing run changed"


# --- data safety ----------------------------------------------------------------------------------


def test_a_run_dir_of_another_config_is_refused_without_last_and_overwrite_replaces_it(ctx, data_root, cache_dir):
    run = Path(ctx.run_copy("pruned", lambda r: shutil.rmtree(r / "last")))  # last/ pruned to save space
    before = snapshot(run)
    history = (run / "history.jsonl").read_text().count("\n")
    answer = call(main, ["train", "--config", ctx.config(train__lr=0.5), "--out", str(run)])
    answer.check(code=2, says=r"holds a run of another config")
    assert snapshot(run) == before and (run / "history.jsonl").read_text().count("\n") == history
    again = call(main, ["train", "--config", ctx.config(), "--out", str(run)])  # the same config: done already
    assert again.code == 0 and snapshot(run) == before, again.err
    over = call(main, ["train", "--config", ctx.config(train__lr=0.5), "--out", str(run), "--overwrite"])
    assert over.code == 0, over.err
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr"] == 0.5


def test_overwrite_into_a_new_folder_creates_it(ctx):
    """--overwrite on a folder that does not exist yet trains there (it crashed before creating it)."""
    answer = call(main, ["train", "--config", ctx.config(), "--out", str(ctx.tmp / "new" / "run"), "--overwrite"])
    assert answer.code == 0, answer.err
    assert (ctx.tmp / "new" / "run" / "metrics.json").is_file()


def test_rerunning_a_finished_run_changes_none_of_its_files(ctx):
    """The same command again on a run that trained to its end (its last/ state kept) answers
    from metrics.json: it used to reload last/ and rewrite metrics.json with 0 training seconds
    and 0 segments (found by finalize's rerun)."""
    run = Path(ctx.run_copy("finished", lambda r: None))
    config = str(run / "config.yaml")
    before = snapshot(run)
    answer = call(main, ["train", "--config", config, "--out", str(run)])
    assert answer.code == 0, answer.err
    assert snapshot(run) == before
    assert json.loads((run / "metrics.json").read_text())["train_segments"] > 0


def test_run_files_without_a_config_are_not_taken_over(ctx):
    folder = ctx.tmp / "stranger"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    call(main, ["train", "--config", ctx.config(), "--out", str(folder)]).check(
        code=2, says=r"holds run files \(metrics\.json\) but no config\.yaml")


def test_a_resume_reads_a_history_whose_last_line_a_crash_cut(ctx):
    from mtl.files import read_jsonl

    run = Path(ctx.run_copy("cut-history", lambda r: None))
    path = run / "history.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])  # a crash mid-line
    (run / "metrics.json").unlink()  # an interrupted run: it never wrote its result
    answer = call(main, ["train", "--config", ctx.config(), "--out", str(run)])
    assert answer.code == 0, answer.err
    records = read_jsonl(path)
    assert len(records) == len(path.read_text().splitlines())  # every line whole again
    assert [r["step"] for r in records if "loss" in r] == sorted({r["step"] for r in records if "loss" in r})


class _Exploit:
    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path("/tmp/mtl-pickle-ran"), "code ran"))


def test_a_resume_state_is_never_unpickled(ctx):
    """A run directory from someone else: an old pickle state is refused, not loaded."""
    marker = Path("/tmp/mtl-pickle-ran")
    marker.unlink(missing_ok=True)

    def plant(run: Path) -> None:
        shutil.rmtree(run / "last")
        (run / "last").mkdir()
        (run / "last" / "trainer_state.pt").write_bytes(pickle.dumps(_Exploit()))
        (run / "metrics.json").unlink()
    run = ctx.run_copy("planted", plant)
    call(main, ["train", "--config", ctx.config(), "--out", run]).check(
        code=2, says=r"trainer_state\.pt: resume state of an older mtlsearch \(a pickle, which is never loaded")
    assert not marker.exists()


def test_the_resume_state_is_safetensors_and_json(ctx):
    last = ctx.run / "last"
    assert sorted(p.name for p in last.iterdir()) == ["state.json", "state.safetensors"]


def test_a_full_disk_is_one_message_and_what_was_written_stays_whole(ctx, monkeypatch):
    import errno

    import mtl.files

    real = mtl.files.write_bytes

    def full(path, data):
        if str(path).endswith("metrics.json"):  # the disk fills up at the very end of the run
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(mtl.files, "write_bytes", full)
    out = ctx.tmp / "full"
    call(main, ["train", "--config", ctx.config(), "--out", str(out)]).check(
        code=2, says=r"metrics\.json: No space left on device \(every file written so far is whole")
    monkeypatch.undo()
    again = call(main, ["train", "--config", ctx.config(), "--out", str(out)])  # space freed: the same command
    assert again.code == 0, again.err
    assert (out / "metrics.json").is_file() and not list(out.rglob(".*.tmp*"))


def test_an_error_nobody_expected_prints_its_traceback_and_says_it_is_a_bug(capsys):
    from mtl.errors import BUG_LINE, run_cli

    def broken() -> int:
        raise ZeroDivisionError("a bug")

    assert run_cli("python -m mtl train", broken) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError: a bug" in err and err.strip().endswith(BUG_LINE)

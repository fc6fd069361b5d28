"""`python -m reports` as a hostile user tries it: one message naming the flag or file, exit 2, no
traceback, in seconds; the study database is never changed and nothing half-written is left."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest

from reports.__main__ import main
from tests.cli_probe import call, snapshot
from tests.reports_helpers import PAIRS, add, config, new_study


@pytest.fixture
def db(tmp_path: Path, data_root: Path, cache_dir: Path) -> Path:
    """A study of two complete configs (and an empty second study in another file)."""
    study = new_study(tmp_path)
    for n, score in enumerate((0.3, 0.5)):
        add(study, values=[score], scores=dict.fromkeys(PAIRS, score), cfg=config(data_root, cache_dir, lr=10 ** -(n + 2)))
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'empty.db'}", study_name="empty", direction="maximize")
    return tmp_path / "synth.db"


def _two_studies(tmp: Path) -> str:
    url = f"sqlite:///{tmp / 'two.db'}"
    for name in ("a", "b"):
        optuna.create_study(storage=url, study_name=name)
    return url


def _old_schema(tmp: Path, db: Path) -> str:
    old = tmp / "old.db"
    old.write_bytes(db.read_bytes())
    with sqlite3.connect(old) as conn:
        conn.execute("update alembic_version set version_num='v3.0.0.d'")
    return f"sqlite:///{old}"


Case = tuple[str, Callable[[Path, str], list[str]], str]
CASES: list[Case] = [
    ("storage-file-missing", lambda t, s: ["build", "--storage", f"sqlite:///{t}/nope.db", "--out", f"{t}/r"],
     r"no such SQLite file"),
    ("storage-not-a-url", lambda t, s: ["build", "--storage", "notadb://x", "--out", f"{t}/r"],
     r"SQLAlchemy knows no database 'notadb'"),
    ("storage-not-a-database", lambda t, s: ["export", "--storage", f"sqlite:///{_text(t)}", "--out", f"{t}/b.yaml"],
     r"cannot use the study database: .*not a database"),
    ("storage-no-driver", lambda t, s: ["export", "--storage", "mysql://u@localhost/db", "--out", f"{t}/b.yaml"],
     r"the mysql driver is not installed"),
    ("storage-old-schema", lambda t, s: ["build", "--storage", _old_schema(t, Path(s[10:])), "--out", f"{t}/r"],
     r"optuna storage upgrade --storage"),
    ("study-misspelt", lambda t, s: ["export", "--storage", s, "--study", "synht", "--out", f"{t}/b.yaml"],
     r"--study 'synht' is not in .*; it holds: synth"),
    ("study-not-named", lambda t, s: ["export", "--storage", _two_studies(t), "--out", f"{t}/b.yaml"],
     r"holds 2 studies: pass --study, one of: a, b"),
    ("export-out-a-folder", lambda t, s: ["export", "--storage", s, "--out", str(t)],
     r"--out .*: is a folder, expected the YAML file to write"),
    ("export-rank-zero", lambda t, s: ["export", "--storage", s, "--rank", "0", "--out", f"{t}/b.yaml"],
     r"--rank must be 1 or more, got 0"),
    ("export-rank-too-far", lambda t, s: ["export", "--storage", s, "--rank", "9", "--out", f"{t}/b.yaml"],
     r"--rank 9: study 'synth' has only 2 complete trial"),
    ("export-no-complete-trial", lambda t, s: ["export", "--storage", f"sqlite:///{t}/empty.db", "--out", f"{t}/b.yaml"],
     r"study 'empty' has no complete trial"),
    ("aggregator-unknown", lambda t, s: ["export", "--storage", s, "--aggregator", "meen", "--out", f"{t}/b.yaml"],
     r"--aggregator: invalid choice: 'meen'"),
    ("build-out-a-file", lambda t, s: ["build", "--storage", s, "--out", _text(t)], r"--out .*: is a file"),
    ("build-top-zero", lambda t, s: ["build", "--storage", s, "--top", "0", "--out", f"{t}/r"], r"--top must be >= 1"),
    ("build-few-resamples", lambda t, s: ["build", "--storage", s, "--bootstrap", "5", "--out", f"{t}/r"],
     r"--bootstrap >= 10"),
    ("ensemble-top-one", lambda t, s: ["ensemble", "--storage", s, "--top", "1", "--out", f"{t}/e.json"],
     r"--top must be at least 2"),
    ("ensemble-out-a-folder", lambda t, s: ["ensemble", "--storage", s, "--out", str(t)],
     r"--out .*: is a folder, expected the JSON file"),
]


def _text(tmp: Path) -> str:
    path = tmp / "notes.txt"
    path.write_text("not a database\n" * 200)
    return str(path)


@pytest.mark.parametrize("name, argv, says", CASES, ids=[c[0] for c in CASES])
def test_a_mistake_is_one_message_and_exit_2(db, tmp_path, name, argv, says):
    storage = f"sqlite:///{db}"
    args = argv(tmp_path, storage)
    before = snapshot(db)
    call(main, args).check(code=2, says=says)
    assert snapshot(db) == before
    assert not list(tmp_path.glob(".*.tmp*")), "a temporary file was left behind"

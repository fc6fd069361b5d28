"""What lets several drivers feed one study: the storage with heartbeats, and the budget lock.

Optuna's RDB storage holds the study; each driver (one `python -m search.run`) records a
heartbeat for each trial it runs, and a trial whose heartbeat went stale belongs to a dead
driver: another driver marks it FAIL (interrupted) and enqueues its config again.
The budget is exact because a driver counts the study's trials and asks for a new one while
holding a lock of the database itself: PostgreSQL's advisory lock, MySQL's GET_LOCK, or for a
SQLite file a file lock beside it (SQLite is one host's file: drivers on other hosts cannot
share it anyway). No queue or server of our own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import random
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import sqlalchemy

from mtl.errors import SetupError
from reports.storage import SQLITE_WAIT, parse_url, storage_error

log = logging.getLogger(__name__)

GRACE = 4
"""A trial is stale after ``GRACE * heartbeat`` seconds without a heartbeat."""


def make_storage(url: str, *, heartbeat: int) -> optuna.storages.RDBStorage:
    """The study's RDB storage, heartbeats on.

    Raises:
        SetupError: The URL names no database SQLAlchemy knows, its driver is not installed, the
            SQLite file's folder cannot be made, the database cannot be reached or written, or
            it was set up by another Optuna version.
    """
    parsed = parse_url(url)
    _prepare_sqlite(parsed)
    for attempt in range(5):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is "experimental" since Optuna 2.9
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=GRACE * heartbeat,
                                                  engine_kwargs=_engine_kwargs(parsed))
        except (sqlalchemy.exc.IntegrityError, optuna.exceptions.StorageInternalError) as e:
            # Two drivers that start at once both create Optuna's tables in a new database; the
            # one that loses finds them made on its next try.
            if attempt == 4 or isinstance(e.__cause__, sqlalchemy.exc.OperationalError):
                raise storage_error(url, e) from e
            time.sleep(0.5 + random.random())
        except (sqlalchemy.exc.SQLAlchemyError, RuntimeError, ImportError) as e:
            raise storage_error(url, e) from e
    raise AssertionError("unreachable")


def _engine_kwargs(url: sqlalchemy.engine.URL) -> dict:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_WAIT}}  # several drivers write one file: wait, don't fail
    return {"pool_pre_ping": True}  # a server restarted under a long search


def _prepare_sqlite(url: sqlalchemy.engine.URL) -> None:
    """Create the folder of a SQLite file so that a first run just works; refuse a file that
    cannot be written (SQLite would fail later, deep inside a commit)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    path = Path(url.database)
    where = f"--storage {url}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        raise SetupError(f"{where}: {path.parent} is a file, expected the folder of the SQLite file") from e
    except OSError as e:
        raise SetupError(f"{where}: cannot create the folder {path.parent}: {e.strerror}") from e
    if path.is_dir():
        raise SetupError(f"{where}: {path} is a folder, expected a SQLite file (or nothing: it is created)")
    if (path.exists() and not os.access(path, os.W_OK)) or not os.access(path.parent, os.W_OK):
        raise SetupError(f"{where}: {'the file' if path.exists() else 'its folder'} is read-only here; a study is "
                         f"written as it runs (use a writable --storage)")


class BudgetLock:
    """A lock every driver of one study takes around "count the trials, ask a new one".

    Args:
        storage: The study's storage (its engine talks to the database).
        study_name: The lock is per study.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, study_name: str) -> None:
        self.engine = storage.engine
        self.backend = self.engine.url.get_backend_name()
        self.study_name = study_name
        self.local = threading.RLock()  # the heartbeat thread and the driver's loop of one process
        self.depth = 0  # re-entered by the thread holding it: the database lock is taken once
        digest = hashlib.sha256(f"mtlsearch:{study_name}".encode()).digest()
        self.key = int.from_bytes(digest[:8], "big", signed=True)  # PostgreSQL's bigint
        if self.backend not in ("sqlite", "postgresql", "mysql", "mariadb"):
            log.warning("storage %s: no lock for several drivers on this database; the budget is exact with "
                        "one driver only (use SQLite, PostgreSQL or MySQL to share a study)", self.backend)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        with self.local:
            self.depth += 1
            try:
                if self.depth > 1:
                    yield
                else:
                    with self._database():
                        yield
            finally:
                self.depth -= 1

    @contextlib.contextmanager
    def _database(self) -> Iterator[None]:
        if self.backend == "sqlite":
            database = self.engine.url.database
            if database in (None, "", ":memory:"):
                yield
                return
            with open(f"{database}.lock", "a+b") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
            return
        if self.backend == "postgresql":
            take, give = "SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"
            params: dict[str, int | str] = {"key": self.key}
        elif self.backend in ("mysql", "mariadb"):
            take, give = "SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)"
            params = {"key": f"mtlsearch:{self.key}"}
        else:
            yield
            return
        with self.engine.connect() as conn:  # a session-level lock: the database drops it if we die
            conn.execute(sqlalchemy.text(take), params)
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text(give), params)
                conn.commit()


class Heartbeats:
    """A thread that records a heartbeat for each trial this driver runs, and every few beats
    looks for other drivers' stale trials.

    Args:
        storage: The study's storage.
        interval: Seconds between beats.
        running: The storage ids of this driver's running trials (called each beat).
        check: Looks for stale trials (called every ``GRACE`` beats, errors logged).
    """

    def __init__(self, storage: optuna.storages.RDBStorage, interval: int, running: Callable[[], list[int]],
                 check: Callable[[], None]) -> None:
        self.storage, self.interval, self.running, self.check = storage, interval, running, check
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="study-heartbeats", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=self.interval * 2)

    def _loop(self) -> None:
        beat = 0
        while not self.stop_event.wait(self.interval):
            beat += 1
            try:
                for trial_id in self.running():
                    self.storage.record_heartbeat(trial_id)
                if beat % GRACE == 0:
                    self.check()
            except Exception:
                log.exception("heartbeat: the study database did not answer; trying again in %d s", self.interval)

"""What a study database is and how it fails: one message, with the fix, for the search that
writes a study and the reports that read it. Imports nothing heavy (SQLAlchemy's URL parsing)."""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy

from mtl.errors import SetupError

__all__ = ["DRIVERS", "SQLITE_WAIT", "hide_password", "parse_url", "storage_error"]

SQLITE_WAIT = 10
"""Seconds a driver waits for a SQLite file another process holds locked (drivers hold it for ms)."""
DRIVERS = {"postgresql": ("psycopg", "postgres"), "mysql": ("pymysql", None), "mariadb": ("pymysql", None)}
"""Database -> the driver package it needs, and the extra of this project that installs it."""


def storage_error(url: str, e: BaseException) -> SetupError:
    """What went wrong with the study database, in one line with the fix."""
    where = f"--storage {hide_password(url)}"
    text = " ".join(str(x) for x in _chain(e)).lower()
    if isinstance(e, ImportError) or "no module named" in text:
        return _driver_missing(where, url)
    if "no longer compatible with the table schema" in text or "optuna storage upgrade" in text:
        return SetupError(f"{where}: the study database was set up by another Optuna version; upgrade it with: "
                          f"optuna storage upgrade --storage '{url}'")
    if "readonly database" in text or "read-only" in text:
        return SetupError(f"{where}: the database is read-only here; make it and its folder writable, or "
                          f"copy it elsewhere")
    if "database is locked" in text:
        return SetupError(f"{where}: the SQLite file is locked by another process (waited {SQLITE_WAIT} s); "
                          f"stop that process, or use another --storage")
    if "unable to open database file" in text:
        return SetupError(f"{where}: cannot open the SQLite file (its folder is missing or not writable)")
    cause = _cause(e, sqlalchemy.exc.OperationalError) or e
    text = str(getattr(cause, "orig", None) or cause).strip()
    first = text.splitlines()[0] if text else type(cause).__name__
    return SetupError(f"{where}: cannot use the study database: {first}")


def _chain(e: BaseException | None) -> Iterator[BaseException]:
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def _cause(e: BaseException, kind: type) -> BaseException | None:
    return next((x for x in _chain(e) if isinstance(x, kind)), None)


def hide_password(url: str) -> str:
    """The URL with its password hidden, as messages show it."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def parse_url(url: str) -> sqlalchemy.engine.URL:
    """The storage URL, parsed, its database known to SQLAlchemy and its driver importable.

    Raises:
        SetupError: Not a URL, an unknown database or driver name, or the driver is not installed.
    """
    try:
        parsed = sqlalchemy.engine.make_url(url)
        parsed.get_dialect()
    except sqlalchemy.exc.NoSuchModuleError as e:  # before ArgumentError: it is one
        kind = url.split(":", 1)[0]
        raise SetupError(f"--storage {url}: SQLAlchemy knows no database {kind!r}; expected sqlite:///file.db, "
                         f"postgresql://user@host/db or mysql://user@host/db") from e
    except sqlalchemy.exc.ArgumentError as e:
        raise SetupError(f"--storage {url}: not a database URL; expected e.g. sqlite:///studies/x.db or "
                         f"postgresql://user@host/db") from e
    except ImportError as e:
        raise _driver_missing(f"--storage {hide_password(url)}", url) from e
    return parsed


def _driver_missing(where: str, url: str) -> SetupError:
    backend = url.split(":", 1)[0].split("+")[0]
    package, extra = DRIVERS.get(backend, (None, None))
    install = f"pip install -e '.[{extra}]'" if extra else f"pip install {package}" if package else "install its driver"
    return SetupError(f"{where}: the {backend} driver is not installed: {install}")

"""The project's one error type, and the command-line edge that answers it.

Every mistake a user can make (a bad flag, config, data file, environment or cluster) raises a
subclass of :class:`MtlError` carrying a message that says where, what was wrong and what was
expected. The three command lines (`mtl`, `search.run`, `reports`) run through :func:`run_cli`:
a project error is one message on stderr and its exit code (2: bad usage, config, data or
environment; 1: a run that failed), with no traceback unless ``-v``; any other exception is a
bug of ours: its traceback, then one line saying so, exit code 1.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable

__all__ = ["BUG_LINE", "MtlError", "RunFailed", "SetupError", "last_line", "run_cli"]

ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
"""An OS error with one of these is the machine's state (a full disk, a read-only folder), not a bug."""
BUG_LINE = "this is a bug of mtlsearch, not of your input: please report it with the traceback above"


class MtlError(Exception):
    """A problem the user can act on; its message is the whole answer (no traceback)."""

    exit_code: int = 2


class SetupError(MtlError):
    """The environment is not as the run needs it: a missing package or device, an unreadable or
    unwritable path, a cluster that cannot be reached or is too small."""


class RunFailed(MtlError):
    """The input was valid but the run failed (a diverged loss, every trial failed)."""

    exit_code = 1


def run_cli(prog: str, body: Callable[[], int], *, verbose: bool = False) -> int:
    """Run a command-line body and turn what it raises into a message and an exit code.

    Args:
        prog: The command as the user typed it, e.g. ``python -m mtl train``; it starts each message.
        body: The command; returns its exit code.
        verbose: Print the traceback of a project error too.

    Returns:
        The body's exit code; a project error's ``exit_code``; 130 on Ctrl-C; 1 for a bug.
    """
    try:
        return body()
    except MtlError as e:
        if verbose:
            traceback.print_exc()
        text = str(e)
        print(f"{prog}: {text}" if "\n" not in text else f"{prog}:\n{text}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more (not even at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as e:  # noqa: BLE001 - the one place that answers what nobody expected
        if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:  # a full disk, a read-only folder
            if verbose:
                traceback.print_exc()
            where = f"{e.filename}: " if e.filename else ""
            print(f"{prog}: {where}{e.strerror} (every file written so far is whole; free the space or fix the "
                  f"permissions, then run the same command again)", file=sys.stderr)
            return 2
        traceback.print_exc()
        print(f"{prog}: {BUG_LINE}", file=sys.stderr)
        return 1


def last_line(error: str | None) -> str | None:
    """The last non-empty line of an error text (a traceback's exception, Ray's cause), or None."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    return lines[-1] if lines else None

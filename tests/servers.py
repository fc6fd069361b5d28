"""Throwaway servers on loopback for tests and benches: a PostgreSQL cluster in a temp dir.

Real servers, started and stopped here; nothing is mocked. `.ci/run` installs Debian's
`postgresql` where it is absent.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them off the PATH), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server(database: str = "studies") -> Iterator[str]:
    """Start a PostgreSQL cluster on 127.0.0.1 in a temp dir; yield its SQLAlchemy URL.

    initdb refuses to run as root: as root, the cluster belongs to the `postgres` user.
    """
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    as_root = os.geteuid() == 0
    run_as = ["runuser", "-u", "postgres", "--"] if as_root else []
    root = Path(tempfile.mkdtemp(prefix="pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_root:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = free_port()
    env = {**os.environ, "LC_ALL": "C.UTF-8"}

    def pg(*args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*run_as, *args], check=True, capture_output=True, text=True, env=env, **kw)

    try:
        pg(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        pg(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "-t", "60", "start",
           "-o", f"-k {sock} -h 127.0.0.1 -p {port} -c fsync=off -c max_connections=200")
        pg(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", database)
        yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, env=env)
        shutil.rmtree(root, ignore_errors=True)


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can read."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        found[int(entry.name)] = (parent, cmdline)
    return found


def stop_ray(temp_root: str | os.PathLike) -> int:
    """Kill the Ray processes whose session lives under `temp_root` (tests set RAY_TMPDIR),
    and their children: unlike `ray stop --force`, a user's own Ray on this machine survives.

    Returns:
        How many processes were killed.
    """
    import signal

    procs = _processes()
    doomed = {pid for pid, (_, cmd) in procs.items() if str(temp_root) in cmd and pid != os.getpid()}
    grew = True
    while grew:  # workers are renamed (ray::IDLE): find them as children of what matched
        more = {pid for pid, (parent, _) in procs.items() if parent in doomed} - doomed - {os.getpid()}
        grew = bool(more)
        doomed |= more
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # what `ray stop` also removes: the address of the last `ray start`, which `--address auto`
    # (and Ray's own lookups) would otherwise try to join
    Path(temp_root, "ray", "ray_current_cluster").unlink(missing_ok=True)
    return len(doomed)

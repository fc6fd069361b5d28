"""Join a Ray cluster, or start a local one: what every command that runs Ray tasks calls first."""

from __future__ import annotations

from typing import Any

__all__ = ["join"]


def join(address: str | None, *, verbose: bool, workers: int = 0) -> Any:
    """Join the cluster at ``address`` (None: start a local Ray on loopback, keeping up to
    ``workers`` idle worker processes); returns `search.tune`, the module that imports ray
    (`tune.disconnect()` leaves)."""
    from search.cluster import prepare_env

    prepare_env(address, verbose=verbose, workers=workers)  # before `import ray`: Ray reads some of it at import
    from search import tune

    tune.connect(address, verbose=verbose)
    return tune

"""Where a trial runs and the memory its (reused) process holds when it starts: `worker.json`.

The study records it as the trial's ``worker`` attribute; a figure that grows from trial to
trial in one process is a leak. No Ray here: `search.tune` passes in what Ray says of the node.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Mapping
from typing import Any

from mtl.files import write_json
from mtl.rundir import RunDir
from search.internals import clear_cublas_workspaces

__all__ = ["record_worker"]


def record_worker(run_dir: str, node: Mapping[str, Any]) -> None:
    """Free what the last trial of this reused process left, then write ``worker.json``.

    Args:
        run_dir: The trial's run directory.
        node: What Ray says of where the trial runs (node_ip, node_id, gpu_ids).
    """
    import torch

    gc.collect()
    params, tensor_mb = _alive(torch)
    info: dict[str, Any] = {"host": socket.gethostname(), **node, "pid": os.getpid(),
                            "torch_threads": torch.get_num_threads(), "rss_mb_at_start": _rss_mb(),
                            "parameters_alive_at_start": params, "tensor_mb_alive_at_start": tensor_mb}
    if torch.cuda.is_available():
        # cuBLAS keeps a workspace per handle in the caching allocator (~32 MB each, counted as
        # allocated): give it back too, so a packed GPU gets the memory and a leak shows as > 0.
        clear_cublas_workspaces(torch)
        torch.cuda.empty_cache()
        info.update(device=torch.cuda.get_device_name(), cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
                    cuda_allocated_mb_at_start=round(torch.cuda.memory_allocated() / 2**20, 1),
                    cuda_reserved_mb_at_start=round(torch.cuda.memory_reserved() / 2**20, 1))
    else:
        info["device"] = "cpu"
    run = RunDir(run_dir)
    run.path.mkdir(parents=True, exist_ok=True)
    write_json(run.worker, info)


def _alive(torch: Any) -> tuple[int, float]:
    """Parameters and tensors (MB) still reachable in this process: 0 and 0.0 when a trial
    starts, unless the last trial of this reused process left a model or data alive."""
    params, size = 0, 0
    for obj in gc.get_objects():
        if isinstance(obj, torch.Tensor):
            params += isinstance(obj, torch.nn.Parameter)
            size += obj.element_size() * obj.nelement()
    return params, round(size / 2**20, 2)


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)

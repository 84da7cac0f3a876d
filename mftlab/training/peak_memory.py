"""Peak memory per process, as users check it first on a GPU run.

    peak_memory(device, distributed=True) -> {"peak_mem_gib": 12.3, "peak_mem_gib_by_rank": [12.3, 11.9], ...}

On CUDA the figure is `torch.cuda.max_memory_allocated` (with `peak_reserved_gib`, what the caching
allocator holds, beside it); on the CPU it is the process's peak resident set (`ru_maxrss`), the
number the operating system kills a process for. With `distributed=True` every process of the
launch must call it (one all-gather): `peak_mem_gib` is the largest over processes and
`peak_mem_gib_by_rank` lists them in rank order.
"""

from __future__ import annotations

import resource
import sys

import torch

GIB = 2**30


def _gib(n: float) -> float:
    return round(n / GIB, 4)


def local_peak_bytes(device: torch.device | str | None = None) -> tuple[float, float | None]:
    """(peak bytes, peak reserved bytes or None) of this process on `device` (CPU: peak RSS)."""
    device = torch.device(device or "cpu")
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device)), float(torch.cuda.max_memory_reserved(device))
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return float(kib if sys.platform == "darwin" else kib * 1024), None  # Linux reports KiB, macOS bytes


def peak_memory(device: torch.device | str | None = None, distributed: bool = False) -> dict:
    """The two (three on CUDA) peak-memory keys of metrics rows and JSON outputs; see the module docstring."""
    import torch.distributed as dist

    peak, reserved = local_peak_bytes(device)
    values = [peak, reserved if reserved is not None else 0.0]
    if distributed and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        mine = torch.tensor(values, dtype=torch.float64, device=torch.device(device or "cpu"))
        everyone = [torch.zeros_like(mine) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, mine)
        rows = [t.cpu().tolist() for t in everyone]
    else:
        rows = [values]
    by_rank = [_gib(r[0]) for r in rows]
    report = {"peak_mem_gib": max(by_rank), "peak_mem_gib_by_rank": by_rank}
    if reserved is not None:
        report["peak_reserved_gib"] = max(_gib(r[1]) for r in rows)
    return report

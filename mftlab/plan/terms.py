"""The planner's vocabulary: the card table, byte sizes, `Term` (one line of arithmetic) and formatting."""

from __future__ import annotations

import os
from dataclasses import dataclass

GIB = 2**30
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SCORE_BYTES = {"fp32": 4, "bf16": 2}


@dataclass(frozen=True)
class GPU:
    """Dense peak throughput (FLOP/s), memory bandwidth (B/s) and memory (bytes) of one card."""

    name: str
    peak_bf16: float
    peak_fp32: float  # plain fp32 matmuls (torch leaves TF32 off for matmuls by default)
    bandwidth: float
    memory: int


def _host_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: a nominal 64 GiB
        return 64 * GIB


GPUS = {
    "h100": GPU("H100 SXM 80GB", 989e12, 67e12, 3.35e12, 81559 * 2**20),
    "h200": GPU("H200 SXM 141GB", 989e12, 67e12, 4.8e12, 143771 * 2**20),
    "a100": GPU("A100 SXM 80GB", 312e12, 19.5e12, 2.0e12, 81920 * 2**20),
    # A CPU process (rehearsals, bench/bench_scale.py): host memory, no CUDA context, no bf16
    # autocast (`mftlab train` runs fp32 activations there); throughput figures are rough.
    "cpu": GPU("CPU (host memory)", 0.1e12, 0.1e12, 20e9, _host_memory()),
}


@dataclass(frozen=True)
class Term:
    """One line of the arithmetic: `value` (in `unit`) = `formula` with its numbers filled in."""

    name: str
    formula: str
    value: float
    unit: str  # "B", "FLOP", "s", "tokens", "steps"
    counted: bool = True  # part of its section's total (False for intermediate quantities)


def fmt_count(n: float) -> str:
    """6738415616 -> '6.74e9'; small numbers stay plain."""
    if abs(n) < 1e5:
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:.3g}"
    mantissa, exponent = f"{n:.3g}".split("e")  # .3g always uses an exponent from 1e5 on
    return f"{mantissa}e{int(exponent)}"


def fmt_bytes(b: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= 0.1 * size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"

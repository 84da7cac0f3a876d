"""Mask file benchmark: bits per weight (packbits, zstd) against H(p), and save / load speed.

Run: .venv/bin/python bench/bench_maskfile.py   (rewrites its section of BENCHMARKS.md)
"""

from __future__ import annotations

import math
import os
import tempfile
import time

import numpy as np
import torch
from report import machine, write_section  # noqa: E402  (bench/ is on sys.path when run as a script)

from mftlab.mask.maskfile import Mask, file_bits_per_param, load_mask, save_mask  # noqa: E402

COMMAND = ".venv/bin/python bench/bench_maskfile.py"


def entropy(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def iid_mask(shapes: list[tuple[int, int]], p: float, seed: int = 0) -> Mask:
    g = torch.Generator().manual_seed(seed)
    keep = {f"model.layers.{i}.mlp.up_proj.weight": torch.rand(s, generator=g) >= p for i, s in enumerate(shapes)}
    return Mask.from_keep(keep, None, "bench", {"name": "random", "mask_ratio": p})


def bits_table(folder: str) -> str:
    rows = ["| masked fraction p | H(p) bits/weight | packbits | zstd | zstd / H(p) |", "|---|---|---|---|---|"]
    mask_shapes = [(4096, 1024)] * 4  # 16.8M weights
    for p in (0.01, 0.1, 0.2):
        mask = iid_mask(mask_shapes, p)
        got = {}
        for codec in ("packbits", "zstd"):
            path = os.path.join(folder, f"{codec}-{p}.safetensors")
            save_mask(mask, path, codec=codec)
            got[codec] = file_bits_per_param(path, mask)
        rows.append(
            f"| {p} | {entropy(p):.3f} | {got['packbits']:.4f} | {got['zstd']:.4f} | {got['zstd'] / entropy(p):.3f} |"
        )
    return "\n".join(rows)


def speed_table(folder: str) -> str:
    shapes = [(4096, 4096)] * 6  # 100.7M targeted weights
    mask = iid_mask(shapes, 0.1)
    n = mask.total
    rows = [
        "| codec | save s | load (validated) s | save M weights/s | load M weights/s | file MB |",
        "|---|---|---|---|---|---|",
    ]
    for codec in ("packbits", "zstd"):
        path = os.path.join(folder, f"speed-{codec}.safetensors")
        t0 = time.perf_counter()
        save_mask(mask, path, codec=codec)
        t1 = time.perf_counter()
        loaded = load_mask(path)
        t2 = time.perf_counter()
        assert all(np.array_equal(loaded.packed[k], mask.packed[k]) for k in mask.names)
        rows.append(
            f"| {codec} | {t1 - t0:.2f} | {t2 - t1:.2f} | {n / 1e6 / (t1 - t0):.0f} | {n / 1e6 / (t2 - t1):.0f} | "
            f"{os.path.getsize(path) / 1e6:.1f} |"
        )
    return f"{n / 1e6:.1f}M targeted weights, 10% masked i.i.d.\n\n" + "\n".join(rows)


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        bits = bits_table(folder)
        speed = speed_table(folder)
    body = (
        f"Command: `{COMMAND}`  \nMachine: {machine()}\n\n"
        "Bits per weight on disk (whole file incl. metadata) for an i.i.d. mask over 16.8M weights, "
        "against the Shannon bound H(p). Both codecs load to identical bits (checked).\n\n"
        f"{bits}\n\nSave and load time (load includes full validation: padding, popcounts):\n\n{speed}\n"
    )
    write_section("Mask file size and speed", body)
    print(body)


if __name__ == "__main__":
    main()

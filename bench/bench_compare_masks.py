"""compare-masks on packed bytes versus a baseline that unpacks masks to booleans and uses numpy.

Makes 4 masks of ~205M weights each (5 Llama-style layers: hidden 2048, intermediate 5120,
GQA k/v 256 rows; ~12.5% masked, correlated through a shared random source), then runs each
variant in its own subprocess. Each child measures its own wall time (load + compare) and its
peak resident memory (getrusage(RUSAGE_SELF).ru_maxrss), and reports the RSS after imports so
the analysis's own share is visible. Both variants must produce identical counts.

    .venv/bin/python bench/bench_compare_masks.py            # writes its section of BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TITLE = "compare-masks (packed vs unpacked)"
COMMAND = ".venv/bin/python bench/bench_compare_masks.py"
HIDDEN, INTER, KV, LAYERS, N_MASKS = 2048, 5120, 256, 5, 4


def shapes() -> dict[str, tuple[int, int]]:
    out = {}
    for i in range(LAYERS):
        p = f"model.layers.{i}"
        out |= {
            f"{p}.self_attn.q_proj.weight": (HIDDEN, HIDDEN),
            f"{p}.self_attn.k_proj.weight": (KV, HIDDEN),
            f"{p}.self_attn.v_proj.weight": (KV, HIDDEN),
            f"{p}.self_attn.o_proj.weight": (HIDDEN, HIDDEN),
            f"{p}.mlp.gate_proj.weight": (INTER, HIDDEN),
            f"{p}.mlp.up_proj.weight": (INTER, HIDDEN),
            f"{p}.mlp.down_proj.weight": (HIDDEN, INTER),
        }
    return out


def make_masks(folder: str) -> list[str]:
    """Packed masks built directly from random bytes: masked where 3 random bits are all 1 (p = 1/8)."""
    import numpy as np

    from mftlab.mask.maskfile import Mask, save_mask

    rng = np.random.default_rng(0)
    shared = {n: rng.integers(0, 256, (r, c // 8), dtype=np.uint8) for n, (r, c) in shapes().items()}
    paths = []
    for m in range(N_MASKS):
        packed = {}
        for name, (r, c) in shapes().items():
            own = rng.integers(0, 256, (2, r, c // 8), dtype=np.uint8)
            packed[name] = np.bitwise_not(shared[name] & own[0] & own[1])  # kept bits
        mask = Mask(packed, dict(shapes()), {n: None for n in packed}, {"name_or_path": "bench"}, {"name": "random"})
        paths.append(os.path.join(folder, f"mask{m}.safetensors"))
        save_mask(mask, paths[-1])
    return paths


def run_packed(paths: list[str]) -> dict:
    from mftlab.analysis.overlap import compare_masks

    result = compare_masks(paths)
    shared = {f"{r['a']}|{r['b']}": r["shared_masked"] for r in result.pairs if r["level"] == "overall"}
    return {
        "shared": shared,
        "exactly": result.consensus[-1]["exactly"],
        "only": list(result.consensus[-1]["only"].values()),
    }


def run_unpacked(paths: list[str]) -> dict:
    """The baseline: unpack every mask to booleans, then numpy on bool arrays."""
    import numpy as np

    from mftlab.analysis.overlap import default_labels, hypergeom_test
    from mftlab.mask.maskfile import load_mask
    from mftlab.mask.packing import unpack_bits

    loaded = [load_mask(p) for p in paths]
    masked = [{n: ~unpack_bits(m.packed[n], m.shapes[n]) for n in m.packed} for m in loaded]  # bool, 1 byte/weight
    del loaded
    labels = default_labels(paths)
    names = list(masked[0])
    shared = {}
    exactly = np.zeros(len(paths) + 1, dtype=np.int64)
    only = np.zeros(len(paths), dtype=np.int64)
    for name in names:
        numel = masked[0][name].size
        for i in range(len(paths)):
            for j in range(i + 1, len(paths)):
                a, b = masked[i][name], masked[j][name]
                x = int(np.count_nonzero(a & b))
                hypergeom_test(numel, int(a.sum()), int(b.sum()), x)  # same statistics as the packed path
                key = f"{labels[i]}|{labels[j]}"
                shared[key] = shared.get(key, 0) + x
        votes = sum(m[name].astype(np.uint8) for m in masked)
        exactly += np.bincount(votes.ravel(), minlength=len(paths) + 1)
        for i in range(len(paths)):
            only[i] += int(np.count_nonzero(masked[i][name] & (votes == 1)))
    return {"shared": shared, "exactly": exactly.tolist(), "only": only.tolist()}


def child(variant: str, paths: list[str]) -> None:
    import numpy  # noqa: F401  (imports count as the starting footprint of both variants)
    import scipy.stats  # noqa: F401

    import mftlab.analysis.overlap  # noqa: F401
    import mftlab.mask.maskfile  # noqa: F401

    after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    counts = run_packed(paths) if variant == "packed" else run_unpacked(paths)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(
        json.dumps({"seconds": seconds, "peak_mib": peak / 1024, "imports_mib": after_imports / 1024, "counts": counts})
    )


def measure(variant: str, paths: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--variant", variant, *paths], check=True, capture_output=True, text=True, cwd=ROOT
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from bench.report import git_revision, machine, write_section

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        t0 = time.perf_counter()
        paths = make_masks(folder)
        made = time.perf_counter() - t0
        numel = sum(r * c for r, c in shapes().values())
        packed_mb = sum(os.path.getsize(p) for p in paths) / 2**20
        packed = measure("packed", paths)
        unpacked = measure("unpacked", paths)
    assert packed["counts"] == unpacked["counts"], "packed and unpacked counts differ"
    speed = unpacked["seconds"] / packed["seconds"]
    mem = packed["peak_mib"] / unpacked["peak_mib"]
    mem_own = (packed["peak_mib"] - packed["imports_mib"]) / max(unpacked["peak_mib"] - unpacked["imports_mib"], 1e-9)
    body = f"""
Command: `{COMMAND}`
Machine: {machine()}; revision {git_revision()}

{N_MASKS} masks of {numel / 1e6:.1f}M weights each ({LAYERS} Llama-style layers, hidden {HIDDEN}, intermediate {INTER},
~12.5% masked, correlated), {packed_mb:.0f} MiB of mask files in all (made in {made:.1f} s). Both variants compute
every pair's shared masked count per tensor with its hypergeometric test, k-of-N consensus and
masked-alone counts; their counts are identical (checked). Each variant runs in a fresh subprocess;
time = load + compare inside the child (perf_counter); peak memory = the child's own
`getrusage(RUSAGE_SELF).ru_maxrss`; "after imports" is the same reading taken before loading any mask.

| variant | time s | peak RSS MiB | after imports MiB | peak above imports MiB |
|---|---|---|---|---|
| packed bytes (`mftlab.analysis.overlap.compare_masks`) | {packed["seconds"]:.2f} | {packed["peak_mib"]:.0f} | {packed["imports_mib"]:.0f} | {packed["peak_mib"] - packed["imports_mib"]:.0f} |
| baseline: unpack to bool + numpy | {unpacked["seconds"]:.2f} | {unpacked["peak_mib"]:.0f} | {unpacked["imports_mib"]:.0f} | {unpacked["peak_mib"] - unpacked["imports_mib"]:.0f} |

Packed is **{speed:.1f}x faster** (goal >= 4x) and uses **{mem:.2f}x** the baseline's peak RSS
({mem_own:.3f}x counting only memory above the imports; goal <= 0.25x).
"""
    write_section(TITLE, body)
    print(body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["packed", "unpacked"])
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args()
    if args.variant:
        child(args.variant, args.paths)
    else:
        main()

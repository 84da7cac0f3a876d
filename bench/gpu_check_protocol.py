"""GPU check, protocol stage: `mftlab protocol` planned at 7B and run for real on one GPU.

1. The README's 8 x A100 LLaMA-2-7B config, `mftlab protocol docs/protocol-llama2-7b.yaml --dry-run`
   (bench/protocol_7b_plan.py: placeholder GSM8K-sized files, no weights): exit code, wall time,
   steps planned and whether every step fits.
2. A real protocol run on this GPU with a small model of real shape: LLaMA-2-7B's hidden size,
   intermediate size, heads and vocabulary with `layers` decoder layers (random bf16 weights saved with
   the character tokenizer, nothing downloaded), one domain of the built-in tiny benchmark, FFT ->
   continued FFT -> one MFT variant -> Wanda -> scoring -> landscape, `runtime: {device: cuda, dtype:
   bfloat16}` (one process: the steps run in the protocol's process, each one's peak reset before it).
   Each step's `peak_mem_gib` (OUT/steps.jsonl) beside its plan (`plan_gib`, the same record).
The run is stopped at the check's deadline (time.perf_counter) and marked "timed out"; rows stay pending.
Without CUDA nothing runs: the rows are pending.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from gpu_check import MEASURED, PLAN, table_row

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SMALL_7B = dict(hidden=4096, inter=11008, heads=32, kv=32, vocab=32000, layers=2)
MIN_LEFT_S = 60
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def dry_run() -> dict:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(HERE, "protocol_7b_plan.py")], capture_output=True, text=True, env=ENV
    )
    lines = proc.stdout.splitlines()
    steps = [line for line in lines if line[:4].strip().rstrip(".").isdigit()]
    return {
        "exit": proc.returncode,
        "seconds": time.perf_counter() - started,
        "steps": len(steps),
        "misfits": sum("DOES NOT FIT" in line for line in steps),
    }


def _save_model(folder: str, size: dict, device: str) -> None:
    """Random bf16 weights of `size`, built on `device`, saved with the character tokenizer."""
    from gpu_check_7b import build
    from gpu_check_7b_commands import _save

    model = build(dict(size, seq=256), device)
    _save(model, folder)
    del model
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def _config(folder: str, data: dict, gpu: str, device: str) -> str:
    import yaml

    values = {
        "backbone": os.path.join(folder, "model"),
        "domains": {"math": data},
        "layers": "1",
        "methods": ["fft", "continued_fft", "mft", "wanda"],
        "mft_inits": ["magnitude"],
        "mft_score_lrs": [1e-3],
        "training": {"fft_epochs": 1, "mft_epochs": 1, "batch_size": 8, "eval_every": 4, "max_seq_len": 256},
        "landscape": {"grid": [3, 3], "tokens": 1024},
        "calibration_tokens": 2048,
        "runtime": {"device": device, "dtype": "bfloat16", "eval_batch_size": 8, "gpu": gpu},
    }
    path = os.path.join(folder, "protocol.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(values, f)
    return path


def real_run(gpu: str, deadline: float | None, size: dict = SMALL_7B, device: str = "cuda") -> dict:
    """The protocol on `device` with a model of `size` (a tiny one on the CPU checks this code)."""
    from mftlab.recipes.tinybench import SplitSizes, write_benchmark

    with tempfile.TemporaryDirectory() as folder:
        _save_model(os.path.join(folder, "model"), size, device)
        data = write_benchmark(os.path.join(folder, "data"), 0, SplitSizes(64, 32, 32))["math"]
        config = _config(folder, data, gpu, device)
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left < MIN_LEFT_S:
            return {"pending": "skipped: the check's budget was spent before it could start"}
        started = time.perf_counter()
        cmd = [sys.executable, "-m", "mftlab.cli.main", "protocol", config, "--out", os.path.join(folder, "out")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=left)
        except subprocess.TimeoutExpired:
            return {"pending": f"timed out after {left:.0f} s"}
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            tail = " ".join(proc.stderr.strip().splitlines()[-2:])[-300:]
            return {"pending": f"FAILED (exit {proc.returncode}): {tail}"}
        with open(os.path.join(folder, "out", "steps.jsonl")) as f:
            steps = [json.loads(line) for line in f if line.strip()]
        return {"seconds": seconds, "model": size, "steps": steps}


def run_protocol_stage(gpu: str, deadline: float | None = None) -> dict:
    out = {"dry_run": dry_run()}
    try:
        out["run"] = real_run(gpu, deadline)
    except Exception as error:  # noqa: BLE001 - recorded in the results; the other rows stand
        out["run"] = {"pending": f"FAILED: {type(error).__name__}: {str(error)[:200]}"}
    return out


def rows(r: dict | None, why: str = "pending: no GPU was available") -> list[dict]:
    """The protocol stage's rows: the 7B dry run (plan), then each real step's peak against its plan."""
    if r is None or "dry_run" not in r:
        return [
            table_row("protocol: 7B config `--dry-run` (no weights)", PLAN, why),
            table_row("protocol on one GPU (7B-wide, 2 layers): each step's peak vs plan", MEASURED, why),
        ]
    d = r["dry_run"]
    fits = "every step fits" if d["misfits"] == 0 else f"{d['misfits']} step(s) do not fit"
    found = [
        table_row(
            "protocol: 7B config `--dry-run` (no weights)",
            PLAN,
            f"exit {d['exit']}, {d['steps']} steps, {fits}",
            f"{d['seconds']:.1f} s wall",
        )
    ]
    run = r.get("run") or {}
    if "pending" in run:
        return found + [table_row("protocol on one GPU (7B-wide, 2 layers)", MEASURED, run["pending"])]
    for s in run["steps"]:
        measured, planned = s.get("peak_mem_gib"), s.get("plan_gib")
        ratio = f"{measured / planned:.2f}x plan" if measured and planned else "n/a"
        found.append(
            table_row(
                f"protocol step: {s['step']} (GiB)",
                MEASURED,
                f"{measured:.2f} measured" if measured is not None else "n/a",
                f"{planned:.2f} plan" if planned is not None else "no plan",
                ratio,
            )
        )
    return found

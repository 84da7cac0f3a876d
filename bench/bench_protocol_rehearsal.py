"""`mftlab protocol` on 1 process and rehearsed on 2 CPU processes: the same tables, and what launching costs.

    .venv/bin/python bench/bench_protocol_rehearsal.py [--no-write]

A one-domain config of the built-in tiny benchmark (math: 64 / 24 / 32 records; a micro-llama backbone
pre-trained on 60 records per domain; FFT, continued FFT, one MFT variant, a random mask and Wanda;
a 3x3 landscape), run twice into fresh folders: without a `runtime` section (every step in the
protocol's process, as before) and with `runtime: {processes: 2, device: cpu, fft_sharding: fsdp}`
(every training step under torchrun, FFT with FSDP on gloo, scoring and the landscape in launched
workers). Reports each run's wall time, the launched steps' seconds (OUT/steps.jsonl), and the
largest relative difference of any test / validation loss and whether exact match is identical.
Writes the "Protocol rehearsal (2 CPU processes)" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import git_revision, machine, write_section  # noqa: E402

TITLE = "Protocol rehearsal (2 CPU processes)"
COMMAND = ".venv/bin/python bench/bench_protocol_rehearsal.py"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def write_configs(folder: str) -> tuple[str, str]:
    from mftlab.recipes.tinybench import SplitSizes, pretraining_records, write_benchmark, write_jsonl

    paths = write_benchmark(os.path.join(folder, "data"), 0, SplitSizes(64, 24, 32))["math"]
    pretrain = write_jsonl(pretraining_records(60, 0), os.path.join(folder, "data", "pretrain.jsonl"))
    base = {
        "backbone": "micro-llama",
        "pretrain": {"data": pretrain, "epochs": 1, "batch_size": 16, "max_seq_len": 96},
        "domains": {"math": paths},
        "layers": "1",
        "methods": ["fft", "continued_fft", "mft", "random", "wanda"],
        "mft_inits": ["magnitude"],
        "mft_score_lrs": [1e-2],
        "random_seeds": 1,
        "training": {"fft_epochs": 3, "mft_epochs": 1, "batch_size": 16, "eval_every": 4, "max_seq_len": 96},
        "landscape": {"grid": [3, 3], "tokens": 100},
        "calibration_tokens": 512,
    }
    one, two = os.path.join(folder, "one.yaml"), os.path.join(folder, "two.yaml")
    with open(one, "w") as f:
        yaml.safe_dump(base, f)
    with open(two, "w") as f:
        yaml.safe_dump(dict(base, runtime={"processes": 2, "device": "cpu", "fft_sharding": "fsdp"}), f)
    return one, two


def run(config: str, out: str) -> dict:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "protocol", config, "--out", out],
        check=True,
        env=ENV,
        capture_output=True,
    )
    seconds = time.perf_counter() - started
    with open(os.path.join(out, "demo.json")) as f:
        index = json.load(f)
    with open(os.path.join(out, "steps.jsonl")) as f:
        steps = [json.loads(line) for line in f if line.strip()]
    return {"seconds": seconds, "scores": index["scores"]["0"]["math"], "steps": steps}


def compare(a: dict, b: dict) -> dict:
    worst, same_em = 0.0, True
    for method, row in a["scores"].items():
        other = b["scores"][method]
        for x, y in (
            (row["test"]["math"]["loss"], other["test"]["math"]["loss"]),
            (row["validation_loss"], other["validation_loss"]),
        ):
            worst = max(worst, abs(x - y) / abs(x))
        same_em &= row["test"]["math"]["exact_match"] == other["test"]["math"]["exact_match"]
    return {"max_rel_loss_diff": worst, "exact_match_identical": same_em, "methods": len(a["scores"])}


def section(r: dict) -> str:
    one, two, c = r["one"], r["two"], r["compare"]
    launched = [s for s in two["steps"] if s["processes"] == 2]
    per = sum(s["seconds"] for s in launched) / len(launched)
    return "\n".join(
        [
            f"Command: `{COMMAND}`  ",
            f"Machine: {r['machine']}; revision {r['revision']}",
            "",
            "One domain of the tiny benchmark (pre-training, FFT, continued FFT, one MFT variant, random and "
            "Wanda masks, scoring, a 3x3 landscape), without a `runtime` section and with "
            "`runtime: {processes: 2, device: cpu, fft_sharding: fsdp}`:",
            "",
            "| run | wall | launched steps | seconds per launched step |",
            "|---|---|---|---|",
            f"| 1 process (no runtime section) | {one['seconds']:.1f} s | 0 | - |",
            f"| 2 processes (torchrun, FSDP FFT, gloo) | {two['seconds']:.1f} s ({two['seconds'] / one['seconds']:.1f}x) "
            f"| {len(launched)} | {per:.1f} s |",
            "",
            f"Tables: exact match {'identical' if c['exact_match_identical'] else 'DIFFERENT'} for all "
            f"{c['methods']} methods; largest relative difference of a test or validation loss "
            f"{c['max_rel_loss_diff']:.1e} (the test in the default suite allows 1e-6). On this tiny model "
            "almost all of a launched step is start-up (two Python processes importing torch and "
            "transformers on 2 cores, the process group, loading): the rehearsal checks the path, not the "
            "speed; at 7B a step's compute dominates.",
        ]
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="Do not touch BENCHMARKS.md.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        one_config, two_config = write_configs(folder)
        one = run(one_config, os.path.join(folder, "one"))
        two = run(two_config, os.path.join(folder, "two"))
    result = {"machine": machine(), "revision": git_revision(), "one": one, "two": two, "compare": compare(one, two)}
    text = section(result)
    if not args.no_write:
        write_section(TITLE, text)
    print(text)
    return result


if __name__ == "__main__":
    main()

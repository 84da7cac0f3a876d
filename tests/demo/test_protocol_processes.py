"""The protocol rehearsed on 2 CPU processes (gloo): every training step launched by torchrun (FFT sharded
with FSDP), scoring and the landscape split over the processes, and in fp32 the same tables as 1 process."""

import json
import os
import subprocess
import sys

import yaml

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _protocol(config_path, out, *extra):
    """The run's index, and its stderr (every progress line: MFTLAB_PROGRESS_SECONDS=0)."""
    result = subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "protocol", str(config_path), "--out", str(out), *extra],
        capture_output=True,
        text=True,
        env=dict(ENV, MFTLAB_PROGRESS_SECONDS="0"),
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads((out / "demo.json").read_text()), result.stderr


def test_two_processes_give_the_tables_of_one(quick_demo, tmp_path):
    from mftlab.harness.local_tasks import exact_match_task, write_task

    out, _ = quick_demo
    demo = yaml.safe_load((out / "protocol.yaml").read_text())
    data = {split: str(out / demo["domains"]["math"][split]) for split in ("train", "validation", "test")}
    write_task(str(tmp_path / "tasks"), exact_match_task("tiny_math", data["test"]))  # lm-eval over the test set
    config = {
        "backbone": str(out / "backbone" / "model"),  # the quick demo's pre-trained backbone
        "domains": {"math": dict(data, tasks=["tiny_math"])},
        "evaluation": {"include_path": str(tmp_path / "tasks"), "batch_size": 32},
        "layers": demo["layers"],
        "methods": ["fft", "continued_fft", "mft"],
        "mft_inits": ["magnitude"],
        "mft_score_lrs": [1e-2],
        "training": {"fft_epochs": 2, "mft_epochs": 1, "batch_size": 16, "eval_every": 4, "max_seq_len": 96},
        "landscape": {"grid": [3, 3], "tokens": 100},
    }
    one_path = tmp_path / "one.yaml"
    one_path.write_text(yaml.safe_dump(config))
    two_path = tmp_path / "two.yaml"  # the same config, with the runtime the README's rehearsal uses
    two_path.write_text(yaml.safe_dump(dict(config, runtime={"processes": 2, "device": "cpu", "fft_sharding": "fsdp"})))
    one, _ = _protocol(one_path, tmp_path / "one")
    two, progress = _protocol(two_path, tmp_path / "two")
    # the launched steps' progress (process 0's) comes back to the protocol's output; their logs keep it all
    for line in ("  math (seed 0): full fine-tuning: step ", "  scoring fft: math test: example ", "  loss landscape"):
        assert line in progress, line
    assert "eval_loss" in progress and "progress: " not in progress
    assert one["methods"] == two["methods"] == ["fft", "continued_fft", "mft"]
    for method, row in one["scores"]["0"]["math"].items():
        other = two["scores"]["0"]["math"][method]
        a, b = row["test"]["math"], other["test"]["math"]
        assert a["exact_match"] == b["exact_match"] and a["token_accuracy"] == b["token_accuracy"], method
        assert abs(a["loss"] - b["loss"]) <= 1e-6 * abs(a["loss"]), method
        assert abs(row["validation_loss"] - other["validation_loss"]) <= 1e-6 * row["validation_loss"], method
    assert one["curves"]["math"]["fft"]["best_step"] == two["curves"]["math"]["fft"]["best_step"]
    # lm-eval's exact match (greedy generation to end-of-text) is the built-in one (teacher-forced), per method
    bench = one["benchmarks"]["0"]["math"]["methods"]
    assert set(bench) == {"fft", "continued_fft", "mft"}
    for method, tasks in bench.items():
        assert (
            tasks["tiny_math"]["exact_match,none"] == one["scores"]["0"]["math"][method]["test"]["math"]["exact_match"]
        )
    assert two["benchmarks"] == one["benchmarks"]  # the launched worker splits the requests: same numbers

    steps = tmp_path / "two" / "seed-0" / "math"
    fft_command = (steps / "fft" / "command.sh").read_text()
    assert (
        "--nproc_per_node 2 --standalone -m mftlab.cli.main train" in fft_command and "--sharding fsdp" in fft_command
    )
    mft_command = (steps / "mft-magnitude-lr0.01" / "command.sh").read_text()
    assert "--method" not in mft_command.split("train", 1)[1].split("--out")[0] and "--sharding" not in mft_command
    assert "protocol-step" in (steps / "eval" / "command.sh").read_text() and (steps / "fft" / "log.txt").exists()
    landscape = json.loads((tmp_path / "two" / "analysis" / "landscape-math" / "landscape.json").read_text())
    assert landscape["world_size"] == 2  # the points were dealt over both processes
    records = [json.loads(line) for line in (tmp_path / "two" / "steps.jsonl").read_text().splitlines()]
    assert {r["processes"] for r in records} == {2} and all(r["peak_mem_gib"] > 0 for r in records)
    assert len(records) == 3 + 1 + 1 + 1  # trainings, one launch scoring the 3 models, lm-eval, landscape
    report = (tmp_path / "two" / "report.md").read_text()
    assert "## Appendix: where it ran" in report and "2 processes per step, launched by torchrun, device cpu" in report
    assert "| math (seed 0): full fine-tuning | 2 | cpu |" in report
    assert "## Table 1 on benchmarks (lm-eval, %)" in report and "math, tiny_math exact_match: MFT - FFT = " in report

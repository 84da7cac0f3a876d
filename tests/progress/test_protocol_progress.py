"""A protocol run's output in a log (not a terminal) shows each step's progress and the run's ETA, and
`mftlab status` on a killed run names the finished steps and the interrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.recipes.tinybench import SplitSizes, pretraining_records, write_benchmark, write_jsonl

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def _config(folder, fft_epochs: int) -> str:
    paths = write_benchmark(os.path.join(folder, "data"), 0, SplitSizes(64, 24, 32))["math"]
    pretrain = write_jsonl(pretraining_records(60, 0), os.path.join(folder, "data", "pretrain.jsonl"))
    config = {
        "backbone": "micro-llama",
        "pretrain": {"data": pretrain, "epochs": 1, "batch_size": 16, "max_seq_len": 96},
        "domains": {"math": paths},
        "layers": "1",
        "methods": ["fft", "mft", "random"],
        "mft_inits": ["magnitude"],
        "mft_score_lrs": [1e-2],
        "random_seeds": 1,
        "training": {"fft_epochs": fft_epochs, "mft_epochs": 1, "batch_size": 16, "eval_every": 4, "max_seq_len": 96},
    }
    path = os.path.join(folder, "p.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(config, f)
    return path


def _protocol(config, out, **popen):
    cmd = [sys.executable, "-m", "mftlab.cli.main", "protocol", config, "--out", str(out)]
    return subprocess.Popen(cmd, env=dict(ENV, MFTLAB_PROGRESS_SECONDS="0"), text=True, **popen)


def test_the_log_of_a_run_shows_every_steps_progress_and_the_runs_eta(tmp_path):
    run = _protocol(_config(tmp_path, 2), tmp_path / "out", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    headers = [line for line in stdout.splitlines() if line.startswith("[") and ") " in line]
    assert len(headers) >= 6 and all("(ETA " in h for h in headers[1:-1]), headers  # after the first, from the plan
    assert "  math (seed 0): full fine-tuning: step 8/8 (100%), loss " in stderr
    assert "eval_loss" in stderr and ", ETA " in stderr
    assert "  scoring mft-magnitude-lr0.01: math test: example 32/32 (100%)" in stderr
    assert "  loss landscape" not in stderr  # no landscape in this config
    progress = json.loads((tmp_path / "out" / "progress.json").read_text())
    assert progress["state"] == "done" and len(progress["finished"]) == progress["total"]
    status = CliRunner().invoke(main, ["status", str(tmp_path / "out")])
    assert status.exit_code == 0 and status.output.startswith(f"protocol run in {tmp_path / 'out'}: done")


def test_status_of_a_killed_run_names_the_finished_steps_and_the_interrupted_one(tmp_path):
    out = tmp_path / "out"
    run = _protocol(_config(tmp_path, 40), out, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    progress = {}
    while time.monotonic() < deadline and run.poll() is None:  # wait for FFT (step 2) to be computing
        try:
            progress = json.loads((out / "progress.json").read_text())
        except (OSError, ValueError):
            progress = {}
        if progress.get("step", 0) >= 2 and progress.get("folder"):
            break
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before it could be killed"
    run.send_signal(signal.SIGKILL)
    run.wait()
    result = CliRunner().invoke(main, ["status", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"protocol run in {out}: interrupted (pid {run.pid} is gone)")
    assert f"  (1/{progress['total']}) pre-training the backbone (micro-llama) on pretrain.jsonl" in "\n".join(lines)
    interrupted = next(line for line in lines if line.startswith("interrupted at: "))
    assert interrupted == f"interrupted at: ({progress['step']}/{progress['total']}) {progress['current']}"
    values = json.loads(CliRunner().invoke(main, ["status", str(out), "--json"]).stdout)
    assert values["state"] == "interrupted" and values["interrupted"] == progress["current"]
    assert values["step_folder"].endswith(progress["folder"]) and values["finished"]


def test_status_of_other_folders(tmp_path, llama_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["status", str(empty)])
    assert result.exit_code == 1 and "is not an mftlab run folder" in result.output
    assert result.output.count("\n") == 1
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "completion": str(i + 1)}) + "\n" for i in range(8)))
    run = tmp_path / "run"
    trained = CliRunner().invoke(
        main, ["train", llama_dir, "--data", data, "--out", run, "--max-steps", "3", "--batch-size", "4"]
    )
    assert trained.exit_code == 0, trained.output
    status = json.loads(CliRunner().invoke(main, ["status", str(run), "--json"]).stdout)
    assert status["kind"] == "train" and status["state"] == "done" and status["step"] == 3 and status["total"] == 3
    pytest.importorskip("yaml")

"""`mftlab train` / `mftlab eval` end to end: outputs, config files, clean errors, kill + resume, two processes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import list_checkpoints


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, match, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert match in result.output, result.output


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "train.jsonl"
    with open(path, "w") as f:
        for _ in range(16):
            a, b = (int(x) for x in rng.integers(0, 10, size=2))
            f.write(json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) + "\n")
    return str(path)


FAST = ["--batch-size", "4", "--score-lr", "0.05", "--max-seq-len", "32", "--log-every", "2"]


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")


def _same_bits(a, b):
    ma, mb = load_mask(a), load_mask(b)
    assert ma.names == mb.names
    return all(np.array_equal(ma.packed[n], mb.packed[n]) for n in ma.names)


def test_train_then_eval_with_mask(llama_dir, data, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", llama_dir, "--data", data, "--out", out, "--max-steps", "4", *FAST)
    assert result.exit_code == 0, result.output
    assert f"wrote {out / 'mask.safetensors'} after 4 steps" in result.output
    assert "step=4" in result.output  # plain log lines when not on a terminal
    assert {"mask.safetensors", "config.json", "metrics.jsonl"} <= set(os.listdir(out))

    evaluated = invoke(
        "eval", llama_dir, "--mask", out / "mask.safetensors", "--data", data, "--json", "--max-new-tokens", "3"
    )
    assert evaluated.exit_code == 0, evaluated.output
    values = json.loads(evaluated.stdout)
    assert values["tokens"] > 0 and values["exact_match"] is not None and values["perplexity"] > 1
    plain = invoke("eval", llama_dir, "--data", data, "--no-generate")
    assert plain.exit_code == 0 and "perplexity" in plain.output and "exact match" not in plain.output


def test_config_file_with_flags_winning(llama_dir, data, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {data}\nmask-ratio: 0.3\nmax_steps: 2\nscore_lr: 1e-2\nbatch_size: 4\n")
    out = tmp_path / "run"
    result = invoke("train", llama_dir, "--config", cfg, "--out", out, "--mask-ratio", "0.2")
    assert result.exit_code == 0, result.output
    resolved = json.loads((out / "config.json").read_text())
    assert resolved["mask_ratio"] == 0.2 and resolved["max_steps"] == 2 and resolved["score_lr"] == 0.01
    assert abs(load_mask(out / "mask.safetensors").mask_ratio - 0.2) < 1e-3


def test_bad_options_and_data_are_clean_errors(llama_dir, data, tmp_path):
    out = tmp_path / "run"
    assert_clean_error(
        invoke("train", llama_dir, "--data", data, "--out", out, "--mask-ratio", "1.5"), "--mask-ratio 1.5"
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "completion": "2"}\n{not json\n')
    assert_clean_error(invoke("train", llama_dir, "--data", bad, "--out", out), "bad.jsonl:2")
    assert_clean_error(invoke("train", llama_dir, "--data", tmp_path / "nope.jsonl", "--out", out), "does not exist")
    assert_clean_error(invoke("train", llama_dir, "--out", out), "missing --data", code=2)
    assert_clean_error(invoke("train", llama_dir, "--data", data, "--out", out, "--resume"), "holds no run")
    assert_clean_error(
        invoke("train", llama_dir, "--config", tmp_path / "x.yaml", "--data", data, "--out", out), "config file"
    )
    assert_clean_error(
        invoke("eval", llama_dir, "--mask", tmp_path / "none.safetensors", "--data", data), "does not exist"
    )
    assert not os.path.exists(out / "mask.safetensors")


def test_kill_then_resume_gives_the_bit_identical_mask(llama_dir, data, tmp_path):
    args = ["--data", data, "--max-steps", "40", "--save-every", "5", *FAST]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "mftlab.cli.main", "train", llama_dir, "--out", str(killed), *args]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list_checkpoints(str(killed)) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not os.path.exists(killed / "mask.safetensors")
    resumed = invoke("train", llama_dir, "--out", killed, *args, "--resume")
    assert resumed.exit_code == 0, resumed.output
    straight = invoke("train", llama_dir, "--out", tmp_path / "straight", *args)
    assert straight.exit_code == 0, straight.output
    assert _same_bits(killed / "mask.safetensors", tmp_path / "straight" / "mask.safetensors")
    steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(2, 41, 2))


def test_two_process_cpu_run_writes_a_valid_mask(llama_dir, data, tmp_path):
    """torchrun starts two gloo processes on this CPU; only the main process writes."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "mftlab.cli.main",
        "train",
        llama_dir,
        "--data",
        data,
        "--out",
        str(out),
        "--max-steps",
        "4",
        *FAST,
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stderr and done.stdout.count("wrote") == 1
    mask = load_mask(out / "mask.safetensors")
    assert abs(mask.mask_ratio - 0.1) < 1e-3
    single = invoke("train", llama_dir, "--data", data, "--out", tmp_path / "one", "--max-steps", "4", *FAST)
    assert single.exit_code == 0
    # Same global batch and token-weighted loss: two processes learn what one process learns.
    assert _same_bits(out / "mask.safetensors", tmp_path / "one" / "mask.safetensors")


@pytest.mark.slow
def test_accelerate_launch_two_processes(llama_dir, data, tmp_path):
    out = tmp_path / "acc"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "mftlab.cli.main",
        "train",
        llama_dir,
        "--data",
        data,
        "--out",
        str(out),
        "--max-steps",
        "4",
        *FAST,
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 process(es)" in done.stderr
    load_mask(out / "mask.safetensors")

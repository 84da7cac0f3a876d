"""Two writers into one folder: the second is refused at once; the first ends as if it ran alone.

The first writer is a real `mftlab` process, paused (SIGSTOP) while it holds the folder, so the
second one is sure to meet it there; the second runs in this process (flock does not care).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.files.folder_lock import LOCK_NAME, hold_folder
from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import list_checkpoints

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
FAST = ["--batch-size", "4", "--score-lr", "0.05", "--max-seq-len", "32", "--log-every", "2", "--seed", "1"]


def _invoke(*args):
    """In-process run with the subprocesses' thread count, so float sums are ordered the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        torch.set_num_threads(threads)


def _start(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "mftlab.cli.main", *map(str, args)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until(condition, proc, what):
    deadline = time.monotonic() + 180
    while not condition():
        assert proc.poll() is None, f"the first run ended before {what}:\n{proc.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, f"no {what} after 180 s"
        time.sleep(0.02)


def _owned_by(out, proc):
    def check():
        try:
            return json.loads((out / LOCK_NAME).read_text())["pid"] == proc.pid
        except (OSError, ValueError, KeyError):
            return False

    return check


def _assert_refused(result, out, pid):
    assert result.exit_code == 1, result.output
    pattern = (
        rf"Error: '{re.escape(str(out))}' is in use by another mftlab run \(pid {pid} on "
        rf"{re.escape(socket.gethostname())}, started \d\d:\d\d:\d\d\); wait for it to finish or choose "
        r"another --out"
    )
    assert re.fullmatch(pattern, result.output.strip()), result.output


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"{i}+{i % 3}=", "completion": str(i + i % 3)}) + "\n" for i in range(16))
    )
    return str(path)


def _rows(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


def _same_mask(a, b):
    ma, mb = load_mask(a), load_mask(b)
    return ma.names == mb.names and all(np.array_equal(ma.packed[n], mb.packed[n]) for n in ma.names)


def _refused_while_first_runs(out, first_args, second_args):
    """Start `first_args`, pause it while it owns `out`, run `second_args` and its --resume (both must be
    refused), then let the first finish and check that it succeeded."""
    first = _start(*first_args)
    try:
        _wait_until(_owned_by(out, first), first, "lock")
        first.send_signal(signal.SIGSTOP)
        try:
            second = _invoke(*second_args)
            resumed = _invoke(*second_args, "--resume")
        finally:
            first.send_signal(signal.SIGCONT)
        _, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    _assert_refused(second, out, first.pid)
    _assert_refused(resumed, out, first.pid)
    assert first.returncode == 0, stderr[-2000:]


def test_second_train_and_resume_are_refused_while_the_first_runs(llama_dir, data, tmp_path):
    out = tmp_path / "run"
    args = ["train", llama_dir, "--data", data, "--max-steps", "6", "--save-every", "2", *FAST]
    _refused_while_first_runs(out, [*args, "--out", out], [*args, "--out", out])
    assert not (out / LOCK_NAME).exists()

    alone = _invoke(*args, "--out", tmp_path / "alone")
    assert alone.exit_code == 0, alone.output
    assert [r["step"] for r in _rows(out)] == [2, 4, 6]  # one series, not two interleaved
    assert _rows(out) == _rows(tmp_path / "alone")
    assert _same_mask(out / "mask.safetensors", tmp_path / "alone" / "mask.safetensors")


def test_after_kill_9_the_folder_is_free_at_once(llama_dir, data, tmp_path):
    out = tmp_path / "run"
    args = ["train", llama_dir, "--data", data, "--out", out, "--save-every", "1", *FAST]
    first = _start(*args, "--max-steps", "40")
    try:
        _wait_until(lambda: bool(list_checkpoints(str(out))), first, "checkpoint")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (out / LOCK_NAME).exists()  # the file stays; the OS released the lock with the process
    with hold_folder(out):
        pass
    resumed = _invoke(*args, "--max-steps", "40", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert (out / "mask.safetensors").exists() and not (out / LOCK_NAME).exists()


# -- landscape ----------------------------------------------------------------------------------
def _landscape_args(model, data, out):
    return [
        "landscape",
        "--model",
        model,
        "--data",
        data,
        "--eval-data",
        data,
        "--grid",
        "3x3",
        "--max-seq-len",
        "32",
        "--max-tokens",
        "64",
        "--no-figures",
        "--out",
        str(out),
    ]


def test_second_landscape_is_refused_while_the_first_runs(llama_dir, data, tmp_path):
    out = tmp_path / "ls"
    _refused_while_first_runs(out, _landscape_args(llama_dir, data, out), _landscape_args(llama_dir, data, out))

    alone = _invoke(*_landscape_args(llama_dir, data, tmp_path / "alone"))
    assert alone.exit_code == 0, alone.output

    def indices(folder):
        return sorted(json.loads(line)["i"] for line in (folder / "landscape.points-0.jsonl").read_text().splitlines())

    assert indices(out) == indices(tmp_path / "alone") == list(range(len(indices(out))))  # each point once
    with np.load(out / "landscape.npz") as a, np.load(tmp_path / "alone" / "landscape.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        for key in ("train_loss", "test_loss", "xs", "ys"):
            np.testing.assert_array_equal(a[key], b[key])

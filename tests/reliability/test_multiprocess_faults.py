"""Faults of multi-process runs (torchrun, 2 CPU processes with gloo).

- kill -9 of one worker at seeded random moments (the launcher stops the other): the newest
  checkpoint is always complete and verifies, and --resume ends bit-identical to an uninterrupted run;
- a worker that stops answering (SIGSTOP): the others fail within --dist-timeout with one `Error:`
  line instead of hanging, and the run resumes.

MODES holds the extra `train` arguments of each parallel mode; a new mode (e.g. `--sharding fsdp`)
is one more entry. RELIABILITY_MP_KILLS=N sets the kills per mode (default 10), RELIABILITY_HANGS
the stops per mode (default 2).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from killing import ENV, KillLog, check_folder, one_worker, run_and_kill, torchrun, workers

from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import latest_checkpoint, list_checkpoints, verify_checkpoint

pytestmark = pytest.mark.reliability
SEED = int(os.environ.get("RELIABILITY_SEED", "0"))
MODES = {"ddp": [], "fsdp": ["--sharding", "fsdp"]}
TIMEOUT_S = 5


def _count(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(12)))
    return str(path)


def _train_args(data, out, mode, steps=8):
    return [
        "train",
        "tiny-llama",
        "--data",
        data,
        "--out",
        out,
        "--max-steps",
        steps,
        "--batch-size",
        2,
        "--max-seq-len",
        24,
        "--save-every",
        1,
        "--log-every",
        1,
        "--keep-checkpoints",
        2,
        "--seed",
        3,
        "--dist-timeout",
        120,
        *MODES[mode],
    ]


def _run(argv, timeout=600):
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=timeout)
    assert done.returncode == 0, f"{argv} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def _metrics(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return [(r["step"], r["loss"], r["mask_ratio"], r["flips"], r["flips_since_start"]) for r in rows]


def _same_result(ref, out):
    a, b = load_mask(os.path.join(ref, "mask.safetensors")), load_mask(os.path.join(out, "mask.safetensors"))
    assert a.names == b.names
    for name in a.names:
        assert np.array_equal(a.packed[name], b.packed[name]), name
    assert _metrics(out) == _metrics(ref)


def _check_resumable(out):
    """What --resume would read is complete: every file whole, the newest checkpoint verified, no warning."""
    check_folder(out, tearable=("metrics.jsonl",))
    found = list_checkpoints(out)
    if found:
        newest = found[-1][1]
        assert verify_checkpoint(newest) is None, newest
        with open(os.path.join(newest, "trainer_state.json")) as f:
            sharded = json.load(f).get("sharding") == "fsdp"
        if not sharded:  # a sharded checkpoint is read by every process together (mftlab.training.sharded_checkpoint)
            warnings = []
            assert latest_checkpoint(out, warnings.append).path == newest and warnings == []


@pytest.mark.parametrize("mode", sorted(MODES))
def test_kill_one_process_then_resume(tmp_path, data, mode, report):
    ref = str(tmp_path / "ref")
    start = time.monotonic()
    _run(torchrun(*_train_args(data, ref, mode)))
    wall = time.monotonic() - start
    out, rng, log = str(tmp_path / "run"), random.Random(SEED + 10), KillLog()
    runs = 0
    while log.kills < _count("RELIABILITY_MP_KILLS", 10):
        extra = ["--resume"] if list_checkpoints(out) else ["--force"]
        args = _train_args(data, out, mode) + extra
        run_and_kill(args, out, rng, wall, log, argv=torchrun(*args), victim=one_worker(rng))
        runs += 1
        if os.path.isdir(out):
            _check_resumable(out)
        if os.path.exists(os.path.join(out, "mask.safetensors")) and runs % 4 == 0:
            shutil.rmtree(out)
    args = _train_args(data, out, mode) + (["--resume"] if list_checkpoints(out) else ["--force"])
    _run(torchrun(*args))
    check_folder(out)
    _same_result(ref, out)
    report[f"multi-process kills ({mode}, train)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "runs": runs + 1,
        "nothing_lost": True,
    }
    print(f"{mode}: {log}")


def test_kill_one_landscape_process_then_resume(tmp_path, data, report):
    args = [
        "landscape",
        "--model",
        "tiny-llama",
        "--data",
        data,
        "--eval-data",
        data,
        "--grid",
        "3x3",
        "--max-tokens",
        24,
        "--max-seq-len",
        24,
        "--batch-size",
        4,
        "--no-figures",
        "--resume",
    ]
    ref = str(tmp_path / "ref")
    start = time.monotonic()
    _run(torchrun(*args, "--out", ref))
    wall = time.monotonic() - start
    out, rng, log = str(tmp_path / "run"), random.Random(SEED + 11), KillLog()
    while log.kills < max(1, _count("RELIABILITY_MP_KILLS", 10) // 2):
        run_and_kill(args, out, rng, wall, log, argv=torchrun(*args, "--out", out), victim=one_worker(rng))
        if os.path.isdir(out):
            check_folder(out, tearable=("landscape.points-",))
        if os.path.exists(os.path.join(out, "landscape.npz")):
            shutil.rmtree(out)
    _run(torchrun(*args, "--out", out))
    check_folder(out)
    with np.load(os.path.join(ref, "landscape.npz")) as a, np.load(os.path.join(out, "landscape.npz")) as b:
        for key in ("train_loss", "test_loss", "xs", "ys"):
            np.testing.assert_array_equal(a[key], b[key])
    report["multi-process kills (ddp, landscape)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "nothing_lost": True,
    }


# -- a process that stops answering -------------------------------------------------------------
def _stop_one(argv, rng, out):
    """Start argv, SIGSTOP one worker once training runs; returns (seconds to the first Error line, stderr, rc)."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
    lines, seen = [], {}

    def read():
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("Error:") and "error" not in seen:
                seen["error"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    victim = None
    metrics = os.path.join(out, "metrics.jsonl")
    size = os.path.getsize(metrics) if os.path.exists(metrics) else 0
    try:
        deadline = time.monotonic() + 300
        while not os.path.exists(metrics) or os.path.getsize(metrics) <= size or len(workers(proc)) < 2:
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "training did not start"
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.0))
        victim = rng.choice(workers(proc))
        victim.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        while "error" not in seen and time.monotonic() < stopped + 10 * TIMEOUT_S + 60:
            assert proc.poll() is None or "error" in seen, "".join(lines)[-3000:]
            time.sleep(0.05)
        latency = seen["error"] - stopped if "error" in seen else None
    finally:
        if victim is not None:
            victim.send_signal(signal.SIGKILL)  # the launcher would wait 30 s for a stopped worker
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=10)
    return latency, "".join(lines), proc.returncode


@pytest.mark.parametrize("mode", sorted(MODES))
def test_stopped_process_fails_the_run_within_dist_timeout(tmp_path, data, mode, report):
    rng, latencies = random.Random(SEED + 20), []
    out = str(tmp_path / "run")
    args = _train_args(data, out, mode, steps=400)
    args[args.index("--dist-timeout") + 1] = TIMEOUT_S
    for n in range(_count("RELIABILITY_HANGS", 2)):
        argv = torchrun(*args, *(["--resume"] if n else []))
        latency, stderr, code = _stop_one(argv, rng, out)
        errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
        assert latency is not None, f"no Error line {10 * TIMEOUT_S + 60} s after the stop:\n{stderr[-3000:]}"
        assert code != 0
        assert len(errors) == 1, errors  # the surviving process; the stopped one never answered
        assert f"did not answer within --dist-timeout {TIMEOUT_S} s" in errors[0] or "went away" in errors[0], errors
        latencies.append(round(latency, 1))
        _check_resumable(out)
        if not list_checkpoints(out):
            shutil.rmtree(out)
    report[f"hangs ({mode}, train, --dist-timeout {TIMEOUT_S} s)"] = {
        "stops": len(latencies),
        "seconds_to_error": latencies,
        "all_failed_with_one_error_line": True,
    }


# -- a held folder under a launcher -------------------------------------------------------------
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_process_refuses_a_held_folder(tmp_path, data, mode, report):
    """The main process cannot take --out: all processes exit with the same one line, none hangs."""
    import sys

    out = tmp_path / "run"
    hold = (
        "import sys\nfrom mftlab.files.folder_lock import hold_folder\nwith hold_folder(sys.argv[1]):\n"
        "    print('held', flush=True)\n    sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        done = subprocess.run(
            torchrun(*_train_args(data, str(out), mode)), capture_output=True, text=True, env=ENV, timeout=300
        )
    finally:
        holder.kill()
        holder.wait()
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert done.returncode != 0
    assert len(errors) == 2 and errors[0] == errors[1], done.stderr[-3000:]
    assert f"'{out}' is in use by another mftlab run (pid {holder.pid} " in errors[0]
    report[f"held folder under a launcher ({mode})"] = {"processes": 2, "all_refused_with_one_line": True}

"""SIGKILL `mftlab train`, `landscape`, `apply` and `sweep` at seeded random moments,
many times; after every kill the output folder holds only complete files, and continuing ends with
results identical to an uninterrupted run.

RELIABILITY_KILLS=N sets the kills per command (default 20); RELIABILITY_SEED changes the moments.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time

import numpy as np
import pytest
from killing import KillLog, check_folder, kills_per_command, run, run_and_kill

from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import list_checkpoints, verify_checkpoint

pytestmark = pytest.mark.reliability
SEED = int(os.environ.get("RELIABILITY_SEED", "0"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    path = folder / "train.jsonl"
    with open(path, "w") as f:
        for i in range(12):
            f.write(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n")
    return str(path)


def _timed(*args):
    start = time.monotonic()
    run(*args)
    return time.monotonic() - start


# -- train --------------------------------------------------------------------------------------
def _train_args(data, out):
    return [
        "train",
        "tiny-llama",
        "--data",
        data,
        "--out",
        out,
        "--max-steps",
        8,
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
    ]


def _metrics(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    return [(r["step"], r["loss"], r["mask_ratio"], r["flips"], r["flips_since_start"]) for r in rows]


def test_kill_train_then_resume(tmp_path, data, report):
    ref = str(tmp_path / "ref")
    wall = _timed(*_train_args(data, ref))
    reference = load_mask(os.path.join(ref, "mask.safetensors"))

    out, rng, log = str(tmp_path / "run"), random.Random(SEED), KillLog()
    runs = 0
    while log.kills < kills_per_command():
        # Resume when a checkpoint exists; otherwise the run never got going: start over (--force).
        extra = ["--resume"] if list_checkpoints(out) else ["--force"]
        run_and_kill(_train_args(data, out) + extra, out, rng, wall, log)
        runs += 1
        if os.path.isdir(out):
            check_folder(out, tearable=("metrics.jsonl",))
            found = list_checkpoints(out)
            if found:  # the newest checkpoint, the one --resume reads, is complete
                latest = found[-1][1]
                assert sorted(os.listdir(latest)) == [
                    "manifest.json",
                    "mask.safetensors",
                    "state.pt",
                    "trainable.safetensors",
                    "trainer_state.json",
                ], latest
                assert verify_checkpoint(latest) is None, latest
        if os.path.exists(os.path.join(out, "mask.safetensors")) and runs % 4 == 0:
            shutil.rmtree(out)  # a finished run: start a new cycle so later kills hit fresh runs too
    run(*_train_args(data, out), "--resume" if list_checkpoints(out) else "--force")

    check_folder(out)  # after a clean finish not even metrics.jsonl may end torn
    final = load_mask(os.path.join(out, "mask.safetensors"))
    assert final.names == reference.names
    for name in reference.names:
        assert np.array_equal(final.packed[name], reference.packed[name]), name
    assert _metrics(out) == _metrics(ref)
    report["single-process kills (train)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "nothing_lost": True,
    }
    print(f"train: {log}")


# -- landscape ----------------------------------------------------------------------------------
def _landscape_args(data, out):
    return [
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
        "--out",
        out,
        "--resume",
    ]


def test_kill_landscape_then_resume(tmp_path, data, report):
    ref = str(tmp_path / "ref")
    wall = _timed(*_landscape_args(data, ref))
    out, rng, log = str(tmp_path / "run"), random.Random(SEED + 1), KillLog()
    runs = 0
    while log.kills < kills_per_command():
        run_and_kill(_landscape_args(data, out), out, rng, 0.7 * wall, log)
        runs += 1
        if os.path.isdir(out):
            check_folder(out, tearable=("landscape.points-",))
        if os.path.exists(os.path.join(out, "landscape.npz")) and runs % 4 == 0:
            shutil.rmtree(out)
    run(*_landscape_args(data, out))

    check_folder(out)
    with np.load(os.path.join(ref, "landscape.npz")) as a, np.load(os.path.join(out, "landscape.npz")) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    report["single-process kills (landscape)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "nothing_lost": True,
    }
    print(f"landscape: {log}")


# -- apply --------------------------------------------------------------------------------------
def _same_model_folder(a: str, b: str) -> None:
    from safetensors import safe_open

    names = sorted(n for n in os.listdir(a))
    assert names == sorted(os.listdir(b)), (names, sorted(os.listdir(b)))
    for name in names:
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(a, name), "numpy") as fa, safe_open(os.path.join(b, name), "numpy") as fb:
                assert sorted(fa.keys()) == sorted(fb.keys())
                for key in fa.keys():
                    assert np.array_equal(fa.get_tensor(key), fb.get_tensor(key)), key
        else:
            with open(os.path.join(a, name), "rb") as fa, open(os.path.join(b, name), "rb") as fb:
                assert fa.read() == fb.read(), name


def test_kill_apply(tmp_path, report):
    mask = str(tmp_path / "mask.safetensors")
    run("baseline", "tiny-llama", "--kind", "magnitude", "--mask-ratio", "0.2", "--out", mask)
    ref = str(tmp_path / "ref")
    wall = _timed("apply", "tiny-llama", mask, "--out", ref)

    parent = tmp_path / "outs"
    parent.mkdir()
    out, rng, log = str(parent / "merged"), random.Random(SEED + 2), KillLog()
    while log.kills < kills_per_command():
        run_and_kill(["apply", "tiny-llama", mask, "--out", out], str(parent), rng, wall, log)
        check_folder(str(parent))
        if os.path.exists(out):  # complete, identical, and a second apply refuses to overwrite it
            _same_model_folder(ref, out)
            again = run("apply", "tiny-llama", mask, "--out", out, check=False)
            assert again.returncode == 1 and "already exists" in again.stderr, again.stderr
            shutil.rmtree(out)
    run("apply", "tiny-llama", mask, "--out", out)
    _same_model_folder(ref, out)
    report["single-process kills (apply)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "nothing_lost": True,
    }
    print(f"apply: {log}")


# -- sweep --------------------------------------------------------------------------------------
def test_kill_sweep_then_resume(tmp_path, data, report):
    import importlib.util

    if importlib.util.find_spec("mftlab.cli.cmd_sweep") is None:
        pytest.skip("`mftlab sweep` (cli/cmd_sweep.py) does not exist yet; this test kills it once it does")
    ref = str(tmp_path / "ref")
    # No --resume flag: re-running a sweep into the same --out reuses its finished points.
    args = [
        "sweep",
        "ratio",
        "tiny-llama",
        "--data",
        data,
        "--eval-data",
        data,
        "--ratios",
        "0.1,0.3",
        "--max-steps",
        3,
        "--batch-size",
        2,
        "--max-seq-len",
        24,
        "--no-figures",
        "--out",
    ]
    wall = _timed(*args, ref)
    out, rng, log = str(tmp_path / "run"), random.Random(SEED + 3), KillLog()
    while log.kills < kills_per_command():
        run_and_kill(args + [out], out, rng, wall, log)
        if os.path.isdir(out):
            check_folder(out, tearable=("metrics.jsonl", "landscape.points-"))
        if os.path.exists(os.path.join(out, "sweep.json")):
            shutil.rmtree(out)  # finished: a re-run would only reuse points, so start a fresh sweep
    run(*args, out)
    check_folder(out)
    ref_masks = sorted(
        os.path.relpath(os.path.join(d, f), ref) for d, _, fs in os.walk(ref) for f in fs if f == "mask.safetensors"
    )
    assert ref_masks, "the sweep wrote no masks"
    for rel in ref_masks:
        a, b = load_mask(os.path.join(ref, rel)), load_mask(os.path.join(out, rel))
        for name in a.names:
            assert np.array_equal(a.packed[name], b.packed[name]), (rel, name)
    report["single-process kills (sweep)"] = {
        "kills": log.kills,
        "at_write": log.at_write,
        "finished_before_kill": log.finished_before_kill,
        "nothing_lost": True,
    }
    print(f"sweep: {log}")

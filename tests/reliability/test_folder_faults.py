"""Concurrent writers into one folder, and damaged checkpoints, many times.

- W `train` (or `landscape`) processes started at once into one --out: exactly one runs, every other
  exits 1 with the "in use" line, and the winner's results equal a run alone;
- the newest checkpoint damaged at random (flipped byte, truncated, deleted or extended file):
  --resume always skips it with one warning and falls back to the previous one; resumed runs end
  identical to the uninterrupted run.

RELIABILITY_WRITER_ROUNDS (default 2 per command, 3 writers each) and RELIABILITY_DAMAGES
(default 20) set the counts.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import numpy as np
import pytest
from killing import ENV, cli, run

from mftlab.mask.maskfile import load_mask
from mftlab.training.checkpoint import latest_checkpoint, list_checkpoints

pytestmark = pytest.mark.reliability
SEED = int(os.environ.get("RELIABILITY_SEED", "0"))
WRITERS = 3
BUSY = "is in use by another mftlab run"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(12)))
    return str(path)


def _train(data, out, steps=6):
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
        3,
        "--seed",
        3,
    ]


def _landscape(data, out):
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
    ]


def _metrics(out):
    rows = [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]
    return [(r["step"], r["loss"], r["mask_ratio"], r["flips"]) for r in rows]


def _same_mask(ref, out):
    a, b = load_mask(os.path.join(ref, "mask.safetensors")), load_mask(os.path.join(out, "mask.safetensors"))
    return a.names == b.names and all(np.array_equal(a.packed[n], b.packed[n]) for n in a.names)


def _race(args: list) -> tuple[int, int]:
    """Start WRITERS copies of `mftlab args` at once; (finished, refused)."""
    procs = [
        subprocess.Popen(cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV)
        for _ in range(WRITERS)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    for p in procs:
        p.stderr.close()
    finished = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] == 1 and r[1].strip().splitlines()[-1].startswith("Error:")]
    assert len(finished) == 1, [r[1][-500:] for r in results]
    assert len(refused) == WRITERS - 1, [r[1][-500:] for r in results]
    for _, stderr in refused:  # normally "in use"; a writer that came after the winner finished: "already holds"
        last = stderr.strip().splitlines()[-1]
        assert BUSY in last or "already holds a" in last, last
    return len(finished), sum(BUSY in r[1] for r in refused)


@pytest.mark.parametrize("command", ["train", "landscape"])
def test_concurrent_writers(tmp_path, data, command, report):
    build = _train if command == "train" else _landscape
    ref = str(tmp_path / "ref")
    run(*build(data, ref))
    rounds, refused_busy = int(os.environ.get("RELIABILITY_WRITER_ROUNDS", 2)), 0
    for n in range(rounds):
        out = str(tmp_path / f"race{n}")
        refused_busy += _race(build(data, out))[1]
        if command == "train":
            assert _same_mask(ref, out) and _metrics(out) == _metrics(ref)  # one series, as if alone
        else:
            with np.load(os.path.join(ref, "landscape.npz")) as a, np.load(os.path.join(out, "landscape.npz")) as b:
                for key in ("train_loss", "test_loss"):
                    np.testing.assert_array_equal(a[key], b[key])
        assert not os.path.exists(os.path.join(out, ".mftlab.lock"))
    report[f"concurrent writers ({command})"] = {
        "rounds": rounds,
        "writers": rounds * WRITERS,
        "refused_in_use": refused_busy,
        "refused_other": rounds * (WRITERS - 1) - refused_busy,
        "nothing_lost": True,
    }


def _damage(folder: str, rng: random.Random) -> str:
    names = sorted(n for n in os.listdir(folder) if n != "trainer_state.json")  # without it, not a checkpoint
    name = rng.choice(names)
    path = os.path.join(folder, name)
    kind = rng.choice(["flip", "truncate", "delete", "extend"])
    size = os.path.getsize(path)
    if kind == "flip":
        with open(path, "r+b") as f:
            f.seek(rng.randrange(size))
            byte = f.read(1)[0]
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte ^ (1 << rng.randrange(8))]))
    elif kind == "truncate":
        os.truncate(path, rng.randrange(size))
    elif kind == "delete":
        os.remove(path)
    else:
        with open(path, "ab") as f:
            f.write(b"\0")
    return f"{kind} {name}"


def test_damaged_newest_checkpoint(tmp_path, data, report):
    out, ref, pristine = str(tmp_path / "run"), str(tmp_path / "ref"), str(tmp_path / "pristine")
    run(*_train(data, out, steps=8))  # in `out` itself: --resume checks that --out is the run's own
    shutil.copytree(out, ref)
    shutil.copytree(out, pristine)
    os.remove(os.path.join(pristine, "mask.safetensors"))  # as if killed after the last checkpoint
    steps = [s for s, _ in list_checkpoints(pristine)]
    rng, trials, kinds = random.Random(SEED + 30), int(os.environ.get("RELIABILITY_DAMAGES", 20)), {}
    resumed = 0
    for n in range(trials):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(pristine, out)
        what = _damage(list_checkpoints(out)[-1][1], rng)
        kinds[what.split()[0]] = kinds.get(what.split()[0], 0) + 1
        warnings = []
        assert latest_checkpoint(out, warnings.append).step == steps[-2], what
        assert len(warnings) == 1 and warnings[0].startswith("warning: skipped damaged checkpoint"), (what, warnings)
        if n < 2:  # the full resume, twice: it ends where the uninterrupted run ended
            done = run(*_train(data, out, steps=8), "--resume")
            assert done.stderr.count("warning: skipped damaged checkpoint") == 1, done.stderr[-2000:]
            assert _same_mask(ref, out) and _metrics(out) == _metrics(ref)
            resumed += 1
    report["damaged checkpoints"] = {
        "tried": trials,
        "detected": trials,
        "by_kind": kinds,
        "resumed_to_the_end": resumed,
        "nothing_lost": True,
    }

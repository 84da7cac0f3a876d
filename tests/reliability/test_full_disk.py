"""A full disk under --out: one clear `Error:` line, exit 1, nothing half-written.

Two ways to fill the disk, both through the real write path of a real `mftlab` process:
- `tmpfs`: a small tmpfs mounted as the output folder (needs mount rights; skipped otherwise);
- `fsize`: RLIMIT_FSIZE on the child process, so writes past N bytes fail with EFBIG (SIGXFSZ
  ignored), which exercises the same error paths and works without privileges.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess

import pytest
from killing import ENV, check_folder, cli, is_temporary

pytestmark = pytest.mark.reliability
LIMIT = 64 * 1024  # bytes: less than any mask, checkpoint or model the commands below write


@pytest.fixture(params=["tmpfs", "fsize"])
def small_disk(request, tmp_path):
    """(folder to write into, preexec_fn for the child)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if request.param == "fsize":

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

        yield str(folder), limit
        return
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={LIMIT // 1024}k", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()[:100]}); the fsize variant covers it")
    try:
        yield str(folder), None
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    data = folder / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+{i}=", "completion": str(2 * i)}) + "\n" for i in range(8)))
    mask = folder / "m.safetensors"
    subprocess.run(
        cli("baseline", "tiny-llama", "--kind", "random", "--out", mask), env=ENV, check=True, capture_output=True
    )
    return str(data), str(mask)


def _fails_cleanly(args, preexec) -> str:
    proc = subprocess.run(cli(*args), capture_output=True, text=True, env=ENV, preexec_fn=preexec, timeout=600)
    assert proc.returncode == 1, (args, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    # landscape's progress bar shares stderr (and a line) with the message: find the message itself.
    errors = re.findall(r"Error: [^\n]*", proc.stderr)
    assert len(errors) == 1 and errors[0].startswith("Error: could not write"), proc.stderr[-2000:]
    assert "space" in errors[0] or "too large" in errors[0], errors[0]
    return errors[0]


def _no_temporaries(folder: str) -> None:
    check_folder(folder, tearable=("metrics.jsonl", "landscape.points-"))
    left = [os.path.join(d, n) for d, ds, fs in os.walk(folder) for n in ds + fs if is_temporary(n)]
    assert not left, left


def test_full_disk_mask(small_disk, inputs):
    folder, preexec = small_disk
    out = os.path.join(folder, "mask.safetensors")
    _fails_cleanly(["baseline", "tiny-llama", "--kind", "magnitude", "--out", out], preexec)
    assert os.listdir(folder) == []


def test_full_disk_apply(small_disk, inputs):
    folder, preexec = small_disk
    _fails_cleanly(["apply", "tiny-llama", inputs[1], "--out", os.path.join(folder, "merged")], preexec)
    assert os.listdir(folder) == []


def test_full_disk_train(small_disk, inputs):
    folder, preexec = small_disk
    out = os.path.join(folder, "run")
    _fails_cleanly(
        [
            "train",
            "tiny-llama",
            "--data",
            inputs[0],
            "--out",
            out,
            "--max-steps",
            3,
            "--save-every",
            1,
            "--batch-size",
            2,
            "--max-seq-len",
            24,
        ],
        preexec,
    )
    _no_temporaries(folder)
    assert not os.path.exists(os.path.join(out, "mask.safetensors"))
    assert [n for n in os.listdir(os.path.join(out, "checkpoints"))] == []


def test_full_disk_landscape(small_disk, inputs, tmp_path):
    folder, preexec = small_disk
    if preexec is None:  # tmpfs: leave only a few hundred bytes free, so the point log fills it
        with open(os.path.join(folder, "filler"), "wb") as f:
            try:
                f.write(b"\0" * (LIMIT - 2048))
                f.flush()
            except OSError:
                pass
        limit = None
    else:

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))  # run.json fits, the point log does not

    out = os.path.join(folder, "ls")
    _fails_cleanly(
        [
            "landscape",
            "--model",
            "tiny-llama",
            "--data",
            inputs[0],
            "--eval-data",
            inputs[0],
            "--grid",
            "5x5",
            "--max-tokens",
            16,
            "--max-seq-len",
            24,
            "--no-figures",
            "--out",
            out,
        ],
        limit,
    )
    _no_temporaries(folder)
    assert not os.path.exists(os.path.join(out, "landscape.npz"))

"""Checkpoint hashing split over processes: each hashes (on save) and verifies (on resume) the files
it wrote; a damaged shard of process 1 is found on a two-process resume and the checkpoint skipped."""

import json
import os
import subprocess

import numpy as np
import pytest
from fsdp_fixtures import BIN, ENV

from mftlab.mask.maskfile import load_mask
from mftlab.training.sharded_checkpoint import verify_share

HERE = os.path.dirname(os.path.abspath(__file__))


def torchrun(*args):
    cmd = [os.path.join(BIN, "torchrun"), "--nproc_per_node", "2", *map(str, args)]
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)


def test_two_processes_hash_and_verify_the_files_they_wrote(tmp_path):
    """The FSDP2 manifest lists every process's files with their sha256, each process hashed its
    own (on save and on resume), process 1 finds its damaged shard; under DDP only process 0 hashes."""
    done = torchrun(os.path.join(HERE, "check_checkpoint_hashing.py"), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 ok" in done.stdout and "rank 1 ok" in done.stdout, done.stdout  # lines may interleave


def _manifest(sizes: dict[str, int]) -> dict[str, dict]:
    return {rel: {"size": size, "sha256": "0" * 64} for rel, size in sizes.items()}


def test_each_process_verifies_what_it_wrote_or_an_even_share():
    files = _manifest(
        {
            "dcp/.metadata": 10,
            "dcp/__0_0.distcp": 400,
            "dcp/__1_0.distcp": 390,
            "dcp/__1_1.distcp": 20,
            "dcp/__2_0.distcp": 380,
            "dcp/__3_0.distcp": 410,
            "rng-0.pt": 5,
            "rng-1.pt": 5,
            "rng-3.pt": 5,
            "state.pt": 7,
            "trainer_state.json": 1,
        }
    )
    # Written by as many processes as verify it: each its own files, process 0 the rest.
    assert verify_share(files, 1, 4, 4) == ["dcp/__1_0.distcp", "dcp/__1_1.distcp", "rng-1.pt"]
    assert verify_share(files, 3, 4, 4) == ["dcp/__3_0.distcp", "rng-3.pt"]
    assert set(verify_share(files, 0, 4, 4)) == {
        "dcp/.metadata",
        "dcp/__0_0.distcp",
        "rng-0.pt",
        "state.pt",
        "trainer_state.json",
    }
    # A different number of processes (or none recorded): disjoint shares of about equal bytes covering all.
    for saved in (4, None):
        shares = [verify_share(files, rank, 2, saved) for rank in range(2)]
        assert sorted(shares[0] + shares[1]) == sorted(files)
        loads = [sum(files[rel]["size"] for rel in share) for share in shares]
        assert max(loads) - min(loads) <= 20, loads
    assert sorted(verify_share(files, 0, 1, 4)) == sorted(files)  # one process checks everything


@pytest.mark.slow
def test_a_damaged_shard_of_process_1_is_skipped_on_a_two_process_resume(llama_dir, tmp_path):
    """End to end (two `torchrun` trainings, about a minute on 2 cores): the same result as without damage."""
    data = tmp_path / "train.jsonl"
    data.write_text(
        "".join(json.dumps({"prompt": f"{i}-{i % 4}=", "completion": str(i - i % 4)}) + "\n" for i in range(16))
    )
    out = tmp_path / "run"
    args = ["-m", "mftlab.cli.main", "train", llama_dir, "--data", data, "--out", out, "--sharding", "fsdp"]
    args += ["--max-steps", "6", "--save-every", "2", "--keep-checkpoints", "3", "--batch-size", "4"]
    args += ["--score-lr", "0.05", "--max-seq-len", "32", "--seed", "2"]
    first = torchrun(*args)
    assert first.returncode == 0, first.stderr[-3000:]
    mask = load_mask(out / "mask.safetensors")
    newest = out / "checkpoints" / "step-000004"
    listed = json.loads((newest / "manifest.json").read_text())["files"]
    assert {"dcp/__0_0.distcp", "dcp/__1_0.distcp", "dcp/.metadata", "rng-0.pt", "rng-1.pt"} <= set(listed)

    # As if the run had been killed after step 4's checkpoint, whose shard from process 1 then got a flipped byte.
    os.remove(out / "mask.safetensors")
    shard = newest / "dcp" / "__1_0.distcp"
    damaged = bytearray(shard.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    shard.write_bytes(bytes(damaged))

    resumed = torchrun(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    warnings = [line for line in (resumed.stdout + resumed.stderr).splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: skipped damaged checkpoint (step-000004: dcp/__1_0.distcp does not match its sha256); "
        "resuming from step 2"
    ]
    again = load_mask(out / "mask.safetensors")
    assert all(np.array_equal(again.packed[n], mask.packed[n]) for n in mask.names)

"""`train --resume` verifies the newest checkpoint; a damaged one is skipped with one warning line
and the run ends exactly as the uninterrupted one did."""

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import load_mask

FAST = ["--batch-size", "4", "--score-lr", "0.05", "--max-seq-len", "32", "--log-every", "2", "--seed", "2"]


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(
        "".join(json.dumps({"prompt": f"{i}-{i % 4}=", "completion": str(i - i % 4)}) + "\n" for i in range(16))
    )
    return str(path)


def _rows(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    machine = ("tokens_per_s", "peak_mem_gib", "peak_mem_gib_by_rank", "peak_reserved_gib")  # differ run to run
    return [{k: v for k, v in r.items() if k not in machine} for r in rows]


def _flip_a_byte(path) -> None:
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0x10
    path.write_bytes(bytes(damaged))


def test_damaged_newest_checkpoint_is_skipped_and_the_result_is_unchanged(llama_dir, data, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        llama_dir,
        "--data",
        data,
        "--out",
        str(out),
        "--max-steps",
        "6",
        "--save-every",
        "2",
        "--keep-checkpoints",
        "3",
        *FAST,
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    mask, rows = load_mask(out / "mask.safetensors"), _rows(out)

    # As if the run had been killed after step 4's checkpoint, which then got a flipped byte.
    os.remove(out / "mask.safetensors")
    _flip_a_byte(out / "checkpoints" / "step-000004" / "trainable.safetensors")

    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    warnings = [line for line in resumed.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: skipped damaged checkpoint (step-000004: trainable.safetensors does not match "
        "its sha256); resuming from step 2"
    ]
    again = load_mask(out / "mask.safetensors")
    assert all(np.array_equal(again.packed[n], mask.packed[n]) for n in mask.names)
    assert _rows(out) == rows


def test_damaged_sharded_checkpoint_is_skipped_the_same_way(llama_dir, data, tmp_path):
    """--sharding fsdp checkpoints (torch.distributed.checkpoint shards) carry the same manifest (one process)."""
    out = tmp_path / "run"
    args = [
        "train",
        llama_dir,
        "--data",
        data,
        "--out",
        str(out),
        "--max-steps",
        "6",
        "--save-every",
        "2",
        "--keep-checkpoints",
        "3",
        "--sharding",
        "fsdp",
        *FAST,
    ]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    mask = load_mask(out / "mask.safetensors")

    os.remove(out / "mask.safetensors")
    shard = sorted((out / "checkpoints" / "step-000004" / "dcp").glob("*.distcp"))[0]
    _flip_a_byte(shard)

    resumed = CliRunner().invoke(main, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    warnings = [line for line in resumed.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: skipped damaged checkpoint (step-000004: dcp/{shard.name} does not match "
        "its sha256); resuming from step 2"
    ]
    again = load_mask(out / "mask.safetensors")
    assert all(np.array_equal(again.packed[n], mask.packed[n]) for n in mask.names)

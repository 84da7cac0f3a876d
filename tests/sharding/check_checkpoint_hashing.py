"""Run by torchrun (2 processes, gloo) with a shared empty folder: checkpoint hashing split over processes.

FSDP2 checkpoints: each process hashes the files it wrote, the manifest lists all of them with
their sha256, a flipped byte in process 1's shard is found by process 1 on resume and the checkpoint
is skipped by both. DDP checkpoints: only process 0 verifies, process 1 reads what it chose.
Prints 'rank R ok' on success.
"""

import gc
import json
import os
import sys

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from mftlab.errors import ConfigError
from mftlab.files import manifest
from mftlab.files.manifest import MANIFEST, Problem
from mftlab.training import checkpoint as ckpt
from mftlab.training import sharded_checkpoint as sckpt

_real_sha256 = manifest.file_sha256
HASHED: list[str] = []  # files this process hashed; the library calls manifest.file_sha256 for each


def _counting_sha256(path: str) -> str:
    HASHED.append(path)
    return _real_sha256(path)


manifest.file_sha256 = _counting_sha256


def hashed_names(folder: str) -> set[str]:
    return {os.path.relpath(p, folder).replace(os.sep, "/") for p in HASHED if p.startswith(folder + os.sep)}


def flip_a_byte(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x10]))


def tiny_fsdp_training():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Linear(32, 8))
    for layer in model:
        fully_shard(layer)
    fully_shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(4, 16)).square().mean().backward()
    optimizer.step()
    return model, optimizer, scheduler


def check_fsdp(out: str, rank: int) -> None:
    model, optimizer, scheduler = tiny_fsdp_training()
    for step in (1, 2):
        path = sckpt.save_sharded_checkpoint(out, step, model, optimizer, scheduler, info={}, keep=3)
    with open(os.path.join(path, MANIFEST)) as f:
        written = json.load(f)
    assert written["format"] == "mftlab.manifest" and written["version"] == 1
    listed = manifest.manifest_files(path) + ["dcp/.metadata"]
    assert sorted(written["files"]) == sorted(listed), sorted(written["files"])
    own = {"dcp/__1_0.distcp", "rng-1.pt"}
    mine = sckpt.hash_own_files(path, rank, 2)  # what this process handed in for the manifest
    assert set(mine) == (own if rank == 1 else set(listed) - own), (rank, sorted(mine))
    assert all(written["files"][rel] == entry for rel, entry in mine.items())
    HASHED.clear()
    dist.barrier()
    if rank == 0:
        for rel, entry in written["files"].items():
            full = os.path.join(path, *rel.split("/"))
            assert entry == {"size": os.path.getsize(full), "sha256": _real_sha256(full)}, rel
        flip_a_byte(os.path.join(path, "dcp", "__1_0.distcp"))
    dist.barrier()

    share = lambda files: sckpt.verify_share(files, rank, 2, 2)  # noqa: E731
    found = ckpt.checkpoint_problem(path, share)
    bad = "dcp/__1_0.distcp"
    assert found == (Problem(2, bad, f"{bad} does not match its sha256") if rank == 1 else None), found
    HASHED.clear()
    warnings = []
    resumed, info = sckpt.latest_sharded_info(out, warnings.append)
    assert resumed == ckpt.checkpoint_dir(out, 1) and info["step"] == 1 and info["world_size"] == 2
    newest = ckpt.checkpoint_dir(out, 2)
    mine = own if rank == 1 else set(listed) - own
    assert hashed_names(newest) == ({bad} if rank == 1 else mine), rank  # process 1 stops at its bad file
    assert hashed_names(resumed) == mine, rank
    message = (
        f"warning: skipped damaged checkpoint (step-000002: {bad} does not match its sha256); resuming from step 1"
    )
    assert warnings == ([message] if rank == 0 else []), warnings
    sckpt.load_sharded_checkpoint(resumed, info, model, optimizer)

    if rank == 1:
        os.truncate(os.path.join(resumed, "rng-1.pt"), 3)
    dist.barrier()
    try:
        sckpt.latest_sharded_info(out, warnings.append)
        raise AssertionError("every checkpoint is damaged")
    except ConfigError as exc:
        assert "every checkpoint in" in str(exc) and "step-000002: dcp/__1_0.distcp does not match" in str(exc)
        assert "step-000001: rng-1.pt has 3 bytes" in str(exc), str(exc)


def check_ddp(out: str, rank: int) -> None:
    if rank == 0:
        for step in (1, 2, 3):
            trainable = {"w": torch.full((64, 64), float(step))}
            state = {"optimizer": {}, "scheduler": {}, "rng": ckpt.capture_rng()}
            ckpt.save_checkpoint(out, step, trainable, state, {"sharding": "none", "world_size": 2}, keep=3)
        flip_a_byte(os.path.join(ckpt.checkpoint_dir(out, 3), "trainable.safetensors"))
    dist.barrier()
    HASHED.clear()
    warnings = []
    resumed = ckpt.latest_checkpoint(out, warnings.append)
    assert resumed.step == 2 and float(resumed.trainable["w"][0, 0]) == 2.0
    assert (len(HASHED) > 0) == (rank == 0), (rank, HASHED)  # only process 0 verifies
    message = (
        "warning: skipped damaged checkpoint (step-000003: trainable.safetensors does not match its sha256); "
        "resuming from step 2"
    )
    assert warnings == ([message] if rank == 0 else []), warnings
    dist.barrier()
    if rank == 0:
        for step in (1, 2):
            os.remove(os.path.join(ckpt.checkpoint_dir(out, step), MANIFEST))
    dist.barrier()
    try:
        ckpt.latest_checkpoint(out)
        raise AssertionError("every checkpoint is damaged")
    except ConfigError as exc:
        assert "every checkpoint in" in str(exc) and f"step-000001: {MANIFEST} is missing" in str(exc), str(exc)


def main():
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        check_fsdp(os.path.join(sys.argv[1], "fsdp"), rank)
        check_ddp(os.path.join(sys.argv[1], "ddp"), rank)
        print(f"rank {rank} ok", flush=True)
        gc.collect()  # the FSDP model (reference cycles) goes while its process group still exists
        dist.barrier()  # no process closes the group while a peer's last collective is still in flight
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

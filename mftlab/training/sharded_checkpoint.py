"""Checkpoints of FSDP-sharded training state, with `torch.distributed.checkpoint` (DCP).

Same place and marker as `mftlab.training.checkpoint` (`OUT/checkpoints/step-XXXXXX/`, complete once
`trainer_state.json` exists), different contents:
- `dcp/`: the trainable parameters and the AdamW state, each process writing its own shards;
- `state.pt`: scheduler state (main process); `rng-<rank>.pt`: each process's RNG states;
- `mask.safetensors`: the mask at that step (method mask), for `mftlab stats --run`;
- `trainer_state.json`: step, best evaluation, and `sharding` / `world_size` of the writer;
- `manifest.json`: size and sha256 of every other file (`mftlab.files.manifest`), written last.

Every process writes into `.step-XXXXXX.tmp`; once all are done the main process adds the marker
and renames the folder into place, so a kill of any process at any moment leaves no checkpoint
that looks complete. Hashing is split: each process hashes the files it wrote (DCP names them
`dcp/__<rank>_<i>.distcp`; `rng-<rank>.pt`) and the main process the rest, then writes one manifest.
`--resume` verifies the newest checkpoint against its manifest the same way, each process its own
files (an even split by size if the number of processes changed), all agreeing on the verdict,
and falls back to the previous one if it is damaged, as `mftlab.training.checkpoint` does.
Resuming needs the same number of processes (a one-line error otherwise).
"""

from __future__ import annotations

import json
import os
import re
import shutil

import torch
import torch.distributed as dist

from mftlab.errors import ConfigError
from mftlab.files.manifest import MANIFEST, hash_files, manifest_files, write_manifest
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.training import checkpoint as ckpt

# The files one process writes: DCP's FileSystemWriter names each process's shards `__<rank>_<i>.distcp`
# (torch 2.4 and later); `.metadata` and anything else is the main process's.
_WRITER = re.compile(r"dcp/__(\d+)_\d+\.distcp|rng-(\d+)\.pt")
_DCP_INDEX = "dcp/.metadata"  # written by the main process; a hidden name, so listed only when handed in


def _writer(rel: str, world: int) -> int:
    """The process that wrote file `rel` of a checkpoint by `world` processes (0 when unknown)."""
    m = _WRITER.fullmatch(rel)
    rank = int(m.group(1) or m.group(2)) if m else 0
    return rank if rank < world else 0


def hash_own_files(folder: str, rank: int, world: int) -> dict[str, dict]:
    """Manifest entries of the checkpoint files in `folder` that process `rank` wrote (on the main
    process also those of unknown writers, and DCP's index); call it once they are complete."""
    names = [rel for rel in manifest_files(folder) if _writer(rel, world) == rank]
    if rank == 0 and os.path.isfile(os.path.join(folder, _DCP_INDEX)):
        names.append(_DCP_INDEX)
    return hash_files(folder, names)


def _size(entry: dict) -> int:
    size = entry.get("size")
    return size if isinstance(size, int) else 0


def verify_share(files: dict[str, dict], rank: int, world: int, saved_world: int | None) -> list[str]:
    """The files of a manifest ({name: entry}) that process `rank` of `world` hashes on resume: those
    it wrote when the checkpoint was written by as many processes, else an even split by size."""
    if saved_world == world:
        return [rel for rel in files if _writer(rel, world) == rank]
    loads, mine = [0] * world, []
    for rel in sorted(files, key=lambda r: (-_size(files[r]), r)):  # largest first to the least loaded
        least = loads.index(min(loads))
        loads[least] += _size(files[rel])
        if least == rank:
            mine.append(rel)
    return mine


def _options(strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)  # frozen weights come from the model


def _state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_options())
    return {"model": model_state, "optim": optim_state}


def save_sharded_checkpoint(
    out_dir: str, step: int, model, optimizer, scheduler, *, info: dict, mask: Mask | None = None, keep: int = 2
) -> str:
    """Write checkpoint `step` from every process (collective) and prune beyond the latest `keep`."""
    import torch.distributed.checkpoint as dcp

    rank, world = dist.get_rank(), dist.get_world_size()
    target = ckpt.checkpoint_dir(out_dir, step)
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.tmp")
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    dist.barrier()
    dcp.save(_state(model, optimizer), checkpoint_id=os.path.join(tmp, "dcp"))  # every shard complete on return
    torch.save(ckpt.capture_rng(), os.path.join(tmp, f"rng-{rank}.pt"))
    if rank == 0:
        torch.save({"scheduler": scheduler.state_dict()}, os.path.join(tmp, "state.pt"))
        if mask is not None:
            save_mask(mask, os.path.join(tmp, "mask.safetensors"))
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as f:  # the marker, last
            json.dump(dict(info, step=step, sharding="fsdp", world_size=world, manifest=MANIFEST), f, indent=2)
    parts = [None] * world
    dist.all_gather_object(parts, hash_own_files(tmp, rank, world))  # also: every process has written its files
    if rank == 0:
        write_manifest(tmp, {rel: entry for part in parts for rel, entry in part.items()})
        if os.path.exists(target):  # a re-run of the same step after resume
            shutil.rmtree(target)
        os.rename(tmp, target)
        for _, old in ckpt.list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return target


def _saved_world(path: str) -> int | None:
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            return json.load(f).get("world_size")
    except (OSError, ValueError, AttributeError):
        return None


def _problem(path: str) -> str | None:
    """Why checkpoint `path` is damaged, or None (collective: each process hashes its share)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    saved = _saved_world(path)
    mine = ckpt.checkpoint_problem(path, lambda files: verify_share(files, rank, world, saved))
    found = [None] * world
    dist.all_gather_object(found, mine)
    problems = [p for p in found if p is not None]
    return min(problems).reason if problems else None  # the one a single process would have named


def latest_sharded_info(out_dir: str, warn=None) -> tuple[str, dict]:
    """(path, trainer_state) of the newest intact checkpoint, checked against this launch (collective)."""
    listed = [ckpt.list_checkpoints(out_dir) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(listed, src=0)  # every process walks the same list
    if not listed[0]:
        raise ckpt.no_checkpoint(out_dir)
    damaged, path = [], None
    for step, candidate in reversed(listed[0]):
        problem = _problem(candidate)
        if problem is None:
            if damaged and warn is not None and dist.get_rank() == 0:
                warn(ckpt.skipped_warning(damaged, step))
            path = candidate
            break
        damaged.append(f"{os.path.basename(candidate)}: {problem}")
    if path is None:
        raise ckpt.all_damaged(out_dir, damaged)
    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
        info = json.load(f)
    world = dist.get_world_size()
    if info.get("sharding") != "fsdp":
        raise ConfigError(
            f"--resume: checkpoint '{path}' was written without --sharding fsdp; resume it with "
            "the sharding it was written with"
        )
    if info.get("world_size") != world:
        raise ConfigError(
            f"--resume: checkpoint '{path}' was written by {info.get('world_size')} processes, this "
            f"launch has {world}; resume with --nproc_per_node {info.get('world_size')}"
        )
    return path, info


def load_sharded_checkpoint(path: str, info: dict, model, optimizer) -> ckpt.Checkpoint:
    """Load parameters and optimizer state in place (collective); returns scheduler + RNG state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state(model, optimizer)
    dcp.load(state, checkpoint_id=os.path.join(path, "dcp"))
    set_state_dict(
        model,
        optimizer,
        model_state_dict=state["model"],
        optim_state_dict=state["optim"],
        options=_options(strict=False),
    )
    rank = dist.get_rank()
    extra = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=True)
    extra["rng"] = torch.load(os.path.join(path, f"rng-{rank}.pt"), map_location="cpu", weights_only=True)
    return ckpt.Checkpoint(path, int(info["step"]), {}, extra, info)

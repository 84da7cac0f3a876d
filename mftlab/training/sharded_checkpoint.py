"""Checkpoints of FSDP-sharded training state, with `torch.distributed.checkpoint` (DCP).

Same place and marker as `mftlab.training.checkpoint` (`OUT/checkpoints/step-XXXXXX/`, complete once
`trainer_state.json` exists), different contents:
- `dcp/`: the trainable parameters and the AdamW state, each process writing its own shards;
- `state.pt`: scheduler state (main process); `rng-<rank>.pt`: each process's RNG states;
- `mask.safetensors`: the mask at that step (method mask), for `mftlab stats --run`;
- `trainer_state.json`: step, best evaluation, and `sharding` / `world_size` of the writer;
- `manifest.json`: size and sha256 of every other file (`mftlab.files.manifest`), written last.

Every process writes into `.step-XXXXXX.tmp`; after a barrier the main process adds the marker
and renames the folder into place, so a kill of any process at any moment leaves no checkpoint
that looks complete. `--resume` verifies the newest checkpoint against its manifest (on the main
process, which tells the others) and falls back to the previous one if it is damaged, as
`mftlab.training.checkpoint` does. Resuming needs the same number of processes (a one-line error otherwise).
"""

from __future__ import annotations

import json
import os
import shutil

import torch
import torch.distributed as dist

from mftlab.errors import ConfigError
from mftlab.files.manifest import MANIFEST, write_manifest
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.training import checkpoint as ckpt


def _options(strict: bool = True):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, strict=strict)  # frozen weights come from the model


def _state(model, optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer, options=_options())
    return {"model": model_state, "optim": optim_state}


def save_sharded_checkpoint(
    out_dir: str, step: int, model, optimizer, scheduler, info: dict, mask: Mask | None = None, keep: int = 2
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
    dcp.save(_state(model, optimizer), checkpoint_id=os.path.join(tmp, "dcp"))
    torch.save(ckpt.capture_rng(), os.path.join(tmp, f"rng-{rank}.pt"))
    dist.barrier()
    if rank == 0:
        torch.save({"scheduler": scheduler.state_dict()}, os.path.join(tmp, "state.pt"))
        if mask is not None:
            save_mask(mask, os.path.join(tmp, "mask.safetensors"))
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as f:  # the marker, last
            json.dump(dict(info, step=step, sharding="fsdp", world_size=world, manifest=MANIFEST), f, indent=2)
        write_manifest(tmp)
        if os.path.exists(target):  # a re-run of the same step after resume
            shutil.rmtree(target)
        os.rename(tmp, target)
        for _, old in ckpt.list_checkpoints(out_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return target


def _newest_intact(out_dir: str, warn) -> str:
    """The newest checkpoint that matches its manifest (main process only: hashing is done once)."""
    damaged = []
    for step, path in reversed(ckpt.list_checkpoints(out_dir)):
        problem = ckpt.verify_checkpoint(path)
        if problem is None:
            if damaged and warn is not None:
                warn(
                    f"warning: skipped damaged checkpoint{'s' if len(damaged) > 1 else ''} "
                    f"({'; '.join(damaged)}); resuming from step {step}"
                )
            return path
        damaged.append(f"{os.path.basename(path)}: {problem}")
    return "damaged: " + "; ".join(damaged)


def latest_sharded_info(out_dir: str, warn=None) -> tuple[str, dict]:
    """(path, trainer_state) of the newest intact checkpoint, checked against this launch (collective)."""
    if not ckpt.list_checkpoints(out_dir):
        raise ConfigError(
            f"--resume: '{out_dir}' holds no checkpoint to resume from; start the run without "
            "--resume (and use --save-every N to write checkpoints)"
        )
    chosen = [_newest_intact(out_dir, warn) if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(chosen, src=0)
    path = chosen[0]
    if path.startswith("damaged: "):
        raise ConfigError(
            f"--resume: every checkpoint in '{out_dir}' is damaged ({path[len('damaged: ') :]}); "
            "start the run again without --resume (--force)"
        )
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

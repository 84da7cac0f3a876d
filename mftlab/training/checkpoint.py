"""Training checkpoints: atomic folders under `OUT/checkpoints/step-XXXXXX/`.

Each folder holds everything needed to continue bit-exactly on one process:
- `trainable.safetensors`: the trainable tensors (mask scores, or all weights for fft/lora);
- `state.pt`: optimizer and scheduler state and RNG states (tensors and plain values only,
  read back with `torch.load(weights_only=True)`, never an arbitrary pickle);
- `trainer_state.json`: step, data position, best evaluation so far;
- `mask.safetensors`: the mask at that step (mask method), read by `mftlab stats --run`;
- `manifest.json`: size and sha256 of every other file (`mftlab.files.manifest`), written last.

A folder is written under a temporary name and renamed into place, so a kill at any moment
leaves only complete checkpoints; the latest `keep` are kept. `--resume` verifies the newest
checkpoint against its manifest and falls back to the previous one if it is damaged (a flipped
byte, a truncated file); checkpoints from before manifests are accepted unverified. In a
multi-process run only the main process verifies; the others are told which checkpoint to read.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from mftlab.errors import ConfigError
from mftlab.files.atomic import atomic_dir
from mftlab.files.manifest import MANIFEST, Problem, Share, find_problem, has_manifest, write_manifest
from mftlab.mask.maskfile import Mask, save_mask

CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"step-(\d+)$")


@dataclass
class Checkpoint:
    path: str
    step: int
    trainable: dict[str, torch.Tensor]
    state: dict  # optimizer, scheduler, rng
    info: dict  # trainer_state.json


def checkpoint_dir(out_dir: str, step: int) -> str:
    return os.path.join(out_dir, CHECKPOINTS, f"step-{step:06d}")


def list_checkpoints(out_dir: str) -> list[tuple[int, str]]:
    """(step, path) of every complete checkpoint, oldest first."""
    root = os.path.join(out_dir, CHECKPOINTS)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        m = _STEP_DIR.match(name)
        path = os.path.join(root, name)
        if m and os.path.isfile(os.path.join(path, "trainer_state.json")):
            found.append((int(m.group(1)), path))
    return sorted(found)


def remove_partial(out_dir: str) -> None:
    """Delete temporary folders left by a run killed while writing a checkpoint."""
    root = os.path.join(out_dir, CHECKPOINTS)
    if os.path.isdir(root):
        for name in os.listdir(root):
            if name.startswith(".") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def capture_rng() -> dict:
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _plain_permissions(folder: str) -> None:
    # mkdtemp makes 0700 folders; give checkpoints the permissions of an ordinary folder.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for name in os.listdir(folder):
        os.chmod(os.path.join(folder, name), 0o666 & ~umask)


def save_checkpoint(
    out_dir: str,
    step: int,
    trainable: dict[str, torch.Tensor],
    state: dict,
    info: dict,
    *,
    mask: Mask | None = None,
    keep: int = 2,
) -> str:
    """Write checkpoint `step` atomically and prune older ones beyond the latest `keep`."""
    from safetensors.torch import save_file

    os.makedirs(os.path.join(out_dir, CHECKPOINTS), exist_ok=True)
    target = checkpoint_dir(out_dir, step)
    if os.path.exists(target):  # a re-run of the same step after resume: replace it
        shutil.rmtree(target)
    with atomic_dir(target) as tmp:
        tensors = {n: t.detach().to("cpu").contiguous() for n, t in trainable.items()}
        save_file(tensors, os.path.join(tmp, "trainable.safetensors"))
        torch.save(state, os.path.join(tmp, "state.pt"))
        if mask is not None:
            save_mask(mask, os.path.join(tmp, "mask.safetensors"))
        # Written last: a folder counts as a checkpoint only once this file exists.
        with open(os.path.join(tmp, "trainer_state.json"), "w", encoding="utf-8") as f:
            json.dump(dict(info, step=step, manifest=MANIFEST), f, indent=2)  # a checkpoint that must have one
        write_manifest(tmp)
        _plain_permissions(tmp)
    for _, old in list_checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _read(path: str) -> Checkpoint:
    from safetensors.torch import load_file

    with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
        info = json.load(f)
    trainable = load_file(os.path.join(path, "trainable.safetensors"))
    state = torch.load(os.path.join(path, "state.pt"), map_location="cpu", weights_only=True)
    return Checkpoint(path, int(info["step"]), trainable, state, info)


_UNREADABLE = (OSError, ValueError, RuntimeError, KeyError)


def load_checkpoint(path: str) -> Checkpoint:
    """Read a checkpoint folder written by `save_checkpoint`."""
    try:
        return _read(path)
    except _UNREADABLE as exc:
        raise ConfigError(
            f"checkpoint '{path}' cannot be read ({str(exc)[:120]}); delete it to resume from an earlier one"
        ) from None


def checkpoint_problem(path: str, share: Share | None = None) -> Problem | None:
    """Why the checkpoint does not match its manifest, or None (also for one that predates manifests).

    `share`: which of the manifest's files this process hashes (`mftlab.files.manifest.find_problem`).
    """
    if has_manifest(path):
        return find_problem(path, share)
    # No manifest: accepted unverified if the checkpoint predates manifests; one whose trainer_state.json
    # names its manifest has lost it (deleted, or a partial copy), and nothing else in it can be trusted.
    try:
        with open(os.path.join(path, "trainer_state.json"), encoding="utf-8") as f:
            expected = json.load(f).get("manifest")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: reading the checkpoint reports it
    return Problem(0, MANIFEST, f"{expected} is missing") if expected else None


def verify_checkpoint(path: str) -> str | None:
    """None when the checkpoint matches its manifest (or predates manifests), else why it does not."""
    problem = checkpoint_problem(path)
    return None if problem is None else problem.reason


def skipped_warning(damaged: list[str], step: int) -> str:
    return (
        f"warning: skipped damaged checkpoint{'s' if len(damaged) > 1 else ''} "
        f"({'; '.join(damaged)}); resuming from step {step}"
    )


def no_checkpoint(out_dir: str) -> ConfigError:
    return ConfigError(
        f"--resume: '{out_dir}' holds no checkpoint to resume from; start the run without "
        "--resume (and use --save-every N to write checkpoints)"
    )


def all_damaged(out_dir: str, damaged: list[str]) -> ConfigError:
    return ConfigError(
        f"--resume: every checkpoint in '{out_dir}' is damaged ({'; '.join(damaged)}); start the "
        "run again without --resume (--force)"
    )


def _newest_intact(out_dir: str, warn: Callable[[str], None] | None) -> Checkpoint:
    found = list_checkpoints(out_dir)
    if not found:
        raise no_checkpoint(out_dir)
    damaged = []
    for step, path in reversed(found):
        problem = verify_checkpoint(path)
        if problem is None:
            try:
                checkpoint = _read(path)
            except _UNREADABLE as exc:
                problem = f"unreadable: {str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__}"
        if problem is not None:
            damaged.append(f"{os.path.basename(path)}: {problem}")
            continue
        if damaged and warn is not None:
            warn(skipped_warning(damaged, step))
        return checkpoint
    raise all_damaged(out_dir, damaged)


def _world() -> tuple[int, int]:
    """(rank, number of processes) of the launch; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def latest_checkpoint(out_dir: str, warn: Callable[[str], None] | None = None) -> Checkpoint:
    """The newest intact checkpoint of a run, or ConfigError when there is none.

    Damaged checkpoints (manifest mismatch, unreadable files) are skipped, newest first; `warn`
    gets one line naming them and the step resumed from instead. With several processes this is
    collective: the main process verifies (hashing once, not once per process) and sends its choice
    (or its error) to the others, which then read that checkpoint.
    """
    rank, world = _world()
    if world == 1:
        return _newest_intact(out_dir, warn)
    checkpoint, choice = None, [None]
    if rank == 0:
        try:
            checkpoint = _newest_intact(out_dir, warn)
            choice = [("path", checkpoint.path)]
        except ConfigError as exc:
            choice = [("error", str(exc))]
    dist.broadcast_object_list(choice, src=0)
    kind, value = choice[0]
    if kind == "error":
        raise ConfigError(value)
    return checkpoint if rank == 0 else load_checkpoint(value)

"""Where a command computes: the `--device` text as a torch.device, and the launch's process group on it.

    resolve_device("auto")      # cuda:LOCAL_RANK when torch sees CUDA, else cpu (the default)
    resolve_device("cuda:1")    # that GPU; a ConfigError naming the value and the fix when there is none
    launch = join_launch(device, timeout_s=1800)   # under torchrun / accelerate launch
    launch.rank, launch.world_size, launch.distributed, launch.barrier()

`cuda` means cuda:LOCAL_RANK, so every process of a launch takes its own GPU. Under a launcher
(WORLD_SIZE > 1) `join_launch` joins the launch's process group: NCCL when the device is a GPU,
gloo on the CPU. The group is closed by the CLI when the command ends (mftlab.cli.main). LOCAL_RANK
and WORLD_SIZE are the launcher's description of this process, not options: they are read here,
in one place.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch

from mftlab.errors import ConfigError

DEVICES = "auto, cpu, cuda or cuda:N"
_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device(text: str) -> str:
    """`text` ('auto', 'cpu', 'cuda' or 'cuda:N', any case, spaces trimmed) in its plain form, or ConfigError."""
    plain = str(text).strip().lower()
    if not _PATTERN.fullmatch(plain):
        raise ConfigError.for_option("device", text, f"is not a device; use {DEVICES} (e.g. cuda:0)", quote=True)
    return plain


def launch_local_rank() -> int:
    """This process's LOCAL_RANK under torchrun / accelerate launch (0 without a launcher)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def launch_world_size() -> int:
    """Processes in the launch (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_device(text: str = "auto", local_rank: int | None = None) -> torch.device:
    """The torch.device that `--device text` names for this process.

    `auto`: cuda:`local_rank` when torch sees CUDA, else cpu; `cuda`: cuda:`local_rank`; `cuda:N`:
    that GPU; `cpu`: the CPU. `local_rank` defaults to the launcher's LOCAL_RANK (0 without one).
    A GPU that is not there is a ConfigError naming the value and the fix.
    """
    plain = check_device(text)
    if plain == "cpu":
        return torch.device("cpu")
    rank = launch_local_rank() if local_rank is None else int(local_rank)
    if not torch.cuda.is_available():
        if plain == "auto":
            return torch.device("cpu")
        build = f"torch {torch.__version__}" + ("" if torch.version.cuda else ", a build without CUDA")
        raise ConfigError.for_option(
            "device", text, f"needs a CUDA GPU, and torch sees none here ({build}); use --device cpu (or auto)"
        )
    index = rank if plain in ("auto", "cuda") else int(plain.split(":")[1])
    count = torch.cuda.device_count()
    if index >= count:
        why = f"local rank {rank} of the launch needs cuda:{rank}" if plain in ("auto", "cuda") else f"cuda:{index}"
        raise ConfigError.for_option(
            "device",
            text,
            f"asks for {why}, but this machine has {count} GPU(s) (cuda:0..cuda:{count - 1}); "
            "launch at most one process per GPU or name a GPU that exists",
        )
    return torch.device("cuda", index)


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of `model`'s first parameter (where its inputs must go); cpu for a model without any."""
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@dataclass(frozen=True)
class Launch:
    """This process's place in a launch: rank, number of processes and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process of the launch (nothing to wait for alone)."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()


def join_launch(device: torch.device, timeout_s: float | None = None) -> Launch:
    """Join the process group of a torchrun / accelerate launch, on `device`'s backend.

    Without a launcher (WORLD_SIZE unset or 1) nothing is started. Under one, the process group is
    NCCL when `device` is a GPU (after `torch.cuda.set_device(device)`) and gloo on the CPU;
    `timeout_s` bounds how long a collective waits for the other processes (None: torch's default).
    A group already started (e.g. by accelerate) is joined as it is.
    """
    device = torch.device(device)
    if launch_world_size() <= 1:
        return Launch(0, 1, device)
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        options = {}
        if timeout_s is not None:
            from mftlab.training.dist_faults import process_group_timeout

            options["timeout"] = process_group_timeout(timeout_s)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", **options)
    return Launch(dist.get_rank(), dist.get_world_size(), device)

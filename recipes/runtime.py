"""Where and how the protocol's steps run: the `runtime` section of a protocol config.

Every key is optional and the defaults are one process on today's device with today's dtype and
no sharding, so a config without `runtime` runs exactly as before. With `processes > 1` every
training step is launched as `torchrun --nproc_per_node N -m mftlab.cli.main train ...` and
scoring and landscapes as launched workers that split their examples / points over the processes
(recipes.launch); `fft_sharding`, `grad_accum`, `gradient_checkpointing` and `dtype` reach the
training steps (FFT and continued FFT shard with FSDP; MFT and LoRA stay data-parallel, as the
paper's runs do). `gpu_memory_gib` is what the plan of every step is checked against before the
first one starts (recipes.protocol_plan).
"""

from __future__ import annotations

from dataclasses import dataclass

from mftlab.errors import ConfigError
from mftlab.models.loading import DTYPES
from mftlab.options_meta import unknown_choice
from mftlab.plan.terms import GIB, GPUS

LAUNCHERS = ("torchrun", "none")
FFT_SHARDINGS = ("fsdp", "none")
RUNTIME_DEVICES = ("auto", "cpu", "cuda")
TIME_GPUS = tuple(g for g in GPUS if g != "cpu")


@dataclass(frozen=True)
class Runtime:
    processes: int = 1  # per step; > 1 launches each step with the launcher
    launcher: str = "torchrun"  # or "none": every step in this process (then processes must be 1)
    launcher_args: tuple[str, ...] = ()  # replace torchrun's --standalone, e.g. multi-node rendezvous
    device: str = "auto"  # auto | cpu | cuda
    dtype: str | None = None  # weights of every step; None = each command's default (auto)
    fft_sharding: str = "none"  # FFT and continued FFT: fsdp | none
    grad_accum: int = 1
    gradient_checkpointing: bool = False
    eval_batch_size: int | None = None  # between training steps, scoring, landscape; None = each one's default
    calibration_batch_size: int | None = None  # Wanda / SNIP calibration batches; None = 16
    gpu_memory_gib: float | None = None  # the plan's limit per GPU; None = the card's memory (`gpu`)
    gpu: str = "h100"  # the card the plan's memory and time assume when the device is a GPU
    checkpoint_every: int = 0  # FFT / continued FFT / LoRA write a resumable checkpoint every N steps (0 = never)

    def __post_init__(self):
        if isinstance(self.processes, bool) or not isinstance(self.processes, int) or self.processes < 1:
            raise ConfigError(f"runtime.processes={self.processes!r} must be a whole number of at least 1, e.g. 8")
        _choice("launcher", self.launcher, LAUNCHERS)
        if self.launcher == "none" and self.processes > 1:
            raise ConfigError(
                f"runtime.launcher=none runs every step in this process, but runtime.processes={self.processes}; "
                "set launcher: torchrun or processes: 1"
            )
        if not all(isinstance(a, str) for a in self.launcher_args):
            raise ConfigError(f"runtime.launcher_args={list(self.launcher_args)!r} must be a list of strings")
        if self.device not in RUNTIME_DEVICES:  # not cuda:N: each launched process takes its own GPU
            raise ConfigError(
                f"runtime.device={self.device!r} is not one of {', '.join(RUNTIME_DEVICES)}; "
                "cuda gives every launched process its own GPU"
            )
        if self.dtype is not None:
            _choice("dtype", self.dtype, DTYPES)
        _choice("fft_sharding", self.fft_sharding, FFT_SHARDINGS)
        for name in ("grad_accum", "eval_batch_size", "calibration_batch_size", "checkpoint_every"):
            value = getattr(self, name)
            low = 0 if name == "checkpoint_every" else 1
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ConfigError(f"runtime.{name}={value!r} must be a whole number of at least {low}")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ConfigError(f"runtime.gradient_checkpointing={self.gradient_checkpointing!r} must be true or false")
        if self.gpu_memory_gib is not None and (
            isinstance(self.gpu_memory_gib, bool)
            or not isinstance(self.gpu_memory_gib, (int, float))
            or not self.gpu_memory_gib > 0
        ):
            raise ConfigError(f"runtime.gpu_memory_gib={self.gpu_memory_gib!r} must be a positive number, e.g. 80")
        _choice("gpu", self.gpu, TIME_GPUS)

    @property
    def launched(self) -> bool:
        """Whether steps run in launched processes (else in the protocol's own process, as before)."""
        return self.launcher == "torchrun" and self.processes > 1

    def on_cpu(self) -> bool:
        """Whether the steps compute on the CPU (`auto` on a machine without CUDA too)."""
        if self.device == "cpu":
            return True
        import torch

        return self.device == "auto" and not torch.cuda.is_available()

    def memory_limit_bytes(self) -> float | None:
        """The per-GPU limit the plan is checked against (None on the CPU without an explicit limit)."""
        if self.gpu_memory_gib is not None:
            return self.gpu_memory_gib * GIB
        return None if self.on_cpu() else GPUS[self.gpu].memory

    def with_overrides(self, processes: int | None = None, device: str | None = None) -> "Runtime":
        """This runtime with the command line's --processes / --device applied."""
        from dataclasses import replace

        changes = {k: v for k, v in (("processes", processes), ("device", device)) if v is not None}
        return replace(self, **changes) if changes else self


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"runtime.{name}={value!r} {unknown_choice(allowed)}")

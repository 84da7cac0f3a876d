"""`MaskCallback`: MFT inside `transformers.Trainer` (and TRL's `SFTTrainer`, which is a Trainer).

The Trainer's optimizer sees only the mask scores (`mask_model` froze every base weight), so
the Trainer does MFT's optimizer step; this callback does the rest, as `mftlab train` does:

- after every optimizer step, recompute the keep-masks from the scores (`handle.refresh()`);
- add `mask_ratio` (masked fraction) and `mask_flips` (bits flipped since the last log) to the
  Trainer's logs: the printed lines and `state.log_history` always; the `report_to` trackers
  (TensorBoard, W&B, ...) when the callback runs before them, which `MaskCallback.attach(trainer,
  handle)` arranges (a Trainer puts the `callbacks=[...]` it is given after its trackers);
- write `mask.safetensors` (format v1) into each checkpoint folder and into `output_dir` at the
  end (main process only).

Under DDP every process holds the same scores (gradients are averaged), so every process
computes the same masks. Sharded set-ups (FSDP, DeepSpeed) split the scores over processes;
they are refused with one line.
"""

from __future__ import annotations

import os

from transformers import TrainerCallback

from mftlab.api.handle import MaskedModel
from mftlab.errors import ConfigError

MASK_FILE = "mask.safetensors"
CHECKPOINT_PREFIX = "checkpoint-"  # transformers' checkpoint folder names


def _sharded(args) -> str | None:
    """The sharded set-up a Trainer's arguments ask for, or None."""
    if getattr(args, "fsdp", None):
        return "FSDP"
    if getattr(args, "deepspeed", None):
        return "DeepSpeed"
    for variable, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "").lower() in ("1", "true", "yes"):
            return name
    return None


class MaskCallback(TrainerCallback):
    """Refresh, log and save the masks of `handle` (from `mftlab.mask_model`) during `Trainer.train()`.

    Example:
        >>> handle = mftlab.mask_model(model, mask_ratio=0.1)  # doctest: +SKIP
        >>> trainer = Trainer(model=model, args=TrainingArguments("out"), train_dataset=ds,
        ...                   callbacks=[MaskCallback(handle)])  # doctest: +SKIP
        >>> trainer.train(); mftlab.Mask.load("out/mask.safetensors")  # doctest: +SKIP
    """

    def __init__(self, handle: MaskedModel, mask_file: str = MASK_FILE):
        if not isinstance(handle, MaskedModel):
            raise ConfigError("MaskCallback needs the handle that mftlab.mask_model(model, ...) returned")
        self.handle, self.mask_file = handle, mask_file
        self.flips = 0  # since the last log
        self.last = None  # the last RefreshStats

    @classmethod
    def attach(cls, trainer, handle: MaskedModel, mask_file: str = MASK_FILE) -> "MaskCallback":
        """Add a MaskCallback to an existing Trainer, ahead of its trackers; returns the callback.

        Example:
            >>> args = TrainingArguments("out", report_to="tensorboard")  # doctest: +SKIP
            >>> trainer = Trainer(model=model, args=args, ...)  # doctest: +SKIP
            >>> MaskCallback.attach(trainer, handle); trainer.train()  # doctest: +SKIP
        """
        callback = cls(handle, mask_file)
        callback._refuse_sharding(trainer.args)
        trainer.callback_handler.callbacks.insert(0, callback)
        return callback

    def _refuse_sharding(self, args) -> None:
        kind = _sharded(args)
        if kind is not None:
            raise ConfigError(
                f"MaskCallback does not support {kind}: it shards the mask scores over processes; "
                "train with plain DDP (or one process), or use `mftlab train --sharding fsdp`"
            )

    def on_init_end(self, args, state, control, **kwargs):
        self._refuse_sharding(args)

    def on_train_begin(self, args, state, control, **kwargs):
        self._refuse_sharding(args)

    def on_step_end(self, args, state, control, **kwargs):
        self.last = self.handle.refresh()  # the optimizer has stepped and zeroed the gradients
        self.flips += self.last.flips

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.last is None or logs is None or "loss" not in logs:
            return
        extra = {"mask_ratio": self.last.mask_ratio, "mask_flips": self.flips}
        logs.update(extra)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(extra)
        self.flips = 0

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"{CHECKPOINT_PREFIX}{state.global_step}")
        if state.is_world_process_zero and os.path.isdir(folder):
            self.handle.save(os.path.join(folder, self.mask_file))

    def on_train_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            os.makedirs(args.output_dir, exist_ok=True)
            self.handle.save(os.path.join(args.output_dir, self.mask_file))

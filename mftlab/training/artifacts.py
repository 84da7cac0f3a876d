"""What a training run leaves behind: the mask file (MFT) or a Hugging Face model folder (FFT, LoRA).

`RunArtifacts.write` writes the final or best artifact atomically; under FSDP every process takes
part in gathering the weights and the main process writes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mftlab.mask.maskfile import save_mask
from mftlab.mft.masking import export_mask
from mftlab.training import sharding
from mftlab.training.config import TrainConfig
from mftlab.training.run_outputs import replace_dir


def method_meta(config: TrainConfig, step: int) -> dict:
    return {
        "name": "mft",
        **config.selection.method_fields(),
        "seed": config.seed,
        "steps": step,
        "config": config.to_dict(),
    }


def save_hf(model, tokenizer, folder: str) -> None:
    model.save_pretrained(folder, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)


@dataclass
class RunArtifacts:
    """Writes the method's artifact (final or best), sharded or not; every process calls `write`."""

    config: TrainConfig
    tokenizer: object
    layers: dict | None
    load_dtype: torch.dtype
    main: bool
    sharded: bool
    model: object = None
    fingerprints: dict | None = None  # of the frozen base weights, taken before sharding

    def mask(self, step: int):
        meta = method_meta(self.config, step)
        if self.sharded:
            return sharding.export_sharded_mask(self.layers, self.fingerprints, self.config.model, meta)
        return export_mask(self.layers, self.config.model, meta)

    def write(self, folder_or_file: str, step: int) -> None:
        """The final (or best) artifact of the method, written atomically."""
        if self.config.method == "mask":
            if self.main:
                save_mask(self.mask(step), folder_or_file)
        elif self.sharded:  # every process takes part in gathering each tensor

            def gathered(tmp):
                return sharding.save_gathered_hf(self.model, self.tokenizer, tmp, self.load_dtype)

            if self.main:
                replace_dir(folder_or_file, gathered)
            else:
                gathered(None)
        elif self.main:
            replace_dir(folder_or_file, lambda tmp: save_hf(self.model, self.tokenizer, tmp))

"""The keep-masks of an MFT run: recomputed from the scores once per optimizer step, flips counted.

Without sharding the step-0 mask is computed as the run starts (on the CPU, before `prepare` moves
the model) and later refreshes reuse the previous cut-offs (`WarmSelector`); under FSDP the scores
are row-sharded and `ShardedMasks` selects across the shards, from the step-0 mask on.
"""

from __future__ import annotations

import torch

from mftlab.mft.flip_counter import FlipCounter
from mftlab.mft.masking import SelectionConfig, count_masked, refresh_masks
from mftlab.mft.warm_select import WarmSelector
from mftlab.training.sharding import ShardedMasks


class KeepMasks:
    """The MaskedLinear wrappers' keep-masks through a run (`layers`: name -> wrapper)."""

    def __init__(self, layers: dict, selection: SelectionConfig, sharded: bool):
        self.layers, self.selection = layers, selection
        self._shards: ShardedMasks | None = None
        self.keep: dict[str, torch.Tensor] | None = None
        self._warm = WarmSelector()
        # Flip counts compare with step 0 and the last log from bit-packed copies (one full mask held).
        self.flips = None if sharded else FlipCounter(refresh_masks(layers, selection))

    def shard(self) -> None:
        """Under FSDP, once the model is sharded: the step-0 mask from the initial scores (before a
        resumed checkpoint's)."""
        self._shards = ShardedMasks(self.layers)
        self.flips = FlipCounter(self._shards.refresh(self.selection))

    def refresh(self) -> dict[str, torch.Tensor]:
        """Recompute every keep-mask from the scores and store it in its wrapper."""
        if self._shards is not None:
            self.keep = self._shards.refresh(self.selection)
        else:
            self.keep = refresh_masks(self.layers, self.selection, self._warm)
        return self.keep

    def start(self, resumed: bool) -> None:
        """The mask training starts from (a resumed checkpoint's scores loaded)."""
        self.refresh()
        self.flips.to(next(iter(self.keep.values())).device)  # packed before `prepare` moved the model
        if resumed:  # the first flips after a resume count from the resumed mask
            self.flips.restart(self.keep)

    def log_fields(self) -> dict:
        """The metrics row's mask fields: realised ratio, flips since the last log and since step 0."""
        masked, n = count_masked(self.keep)
        since_last, since_start = self.flips.count(self.keep)
        return {"mask_ratio": masked / n, "flips": since_last, "flips_since_start": since_start}

    def mask_ratio(self) -> float:
        masked, n = count_masked(self.keep)
        return masked / n

"""The masked layer: a wrapper around a frozen nn.Linear or transformers Conv1D (CONTRIBUTING.md, style rule 3).

The wrapper holds the original module unchanged as `base` (its weight stays frozen and
bit-identical), one learnable parameter `mask_scores` with the weight's shape and layout, and a
boolean `keep` buffer (1 = kept) that the trainer refreshes once per optimizer step from the
scores. The forward pass is `mftlab.mft.ste.masked_matmul`, which never keeps W ⊙ keep alive.
"""

from __future__ import annotations

import torch
from torch import nn

from mftlab.mft.ste import masked_matmul

SCORE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class MaskedLinear(nn.Module):
    """A frozen Linear ([out, in]) or Conv1D ([in, out]) whose weight is multiplied by a learned mask."""

    def __init__(self, base: nn.Module, kind: str, scores: torch.Tensor, param_name: str):
        super().__init__()
        if tuple(scores.shape) != tuple(base.weight.shape):
            raise ValueError(f"scores {list(scores.shape)} do not match weight {list(base.weight.shape)}")
        self.base = base
        self.kind = kind
        self.param_name = param_name  # the weight's name in the unwrapped model's state dict
        for p in base.parameters():
            p.requires_grad_(False)
        self.mask_scores = nn.Parameter(scores.to(base.weight.device))
        # Not persistent: the keep-mask is derived from the scores, never stored with the model.
        self.register_buffer("keep", torch.ones_like(base.weight, dtype=torch.bool), persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """The frozen base weight (so code that reads `module.weight` still works)."""
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return getattr(self.base, "bias", None)

    def set_keep(self, keep: torch.Tensor) -> None:
        """Replace the keep-mask (boolean, weight's shape). Called between optimizer steps."""
        if keep.shape != self.keep.shape:
            raise ValueError(f"keep {list(keep.shape)} does not match weight {list(self.keep.shape)}")
        self.keep = keep.to(device=self.keep.device, dtype=torch.bool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return masked_matmul(x, self.base.weight, self.bias, self.mask_scores, self.keep, kind=self.kind)

    def extra_repr(self) -> str:
        kept = int(self.keep.sum())
        return f"kind={self.kind}, shape={list(self.keep.shape)}, kept={kept}/{self.keep.numel()}"

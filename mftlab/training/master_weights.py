"""fp32 master weights for 16-bit trainable parameters (one process or DDP; FSDP2 has its own).

AdamW on bf16 weights loses every update smaller than half the bf16 spacing of the weight
(near |w| = 0.02 that is 6e-5: an lr 2e-5 step rounds away). So the optimizer steps an fp32
copy of each trainable parameter; the model keeps its load dtype for the forward and backward:

    backward (16-bit grads on the model) -> grads_to_master (fp32 .grad on the copy)
    -> clip + AdamW on the copies -> master_to_model (cast copy back into the model)
"""

from __future__ import annotations

import torch
from torch import nn


class MasterWeights:
    """fp32 copies of `params` (name -> model parameter); `initial` gives their values on resume."""

    def __init__(self, params: dict[str, nn.Parameter], initial: dict[str, torch.Tensor] | None = None):
        self.model = params
        self.master = {}
        for name, p in params.items():
            source = initial[name] if initial is not None and name in initial else p.detach()
            self.master[name] = nn.Parameter(source.to(device=p.device, dtype=torch.float32, copy=True))

    def parameters(self) -> list[nn.Parameter]:
        return list(self.master.values())

    @torch.no_grad()
    def grads_to_master(self) -> None:
        for name, p in self.model.items():
            self.master[name].grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def master_to_model(self) -> None:
        for name, p in self.model.items():
            p.copy_(self.master[name])

"""One optimizer step of the training loop (mftlab.training.loop): gradients over this process's
micro-batches, the non-finite loss check, then clipping, AdamW (on fp32 master copies where the
weights are 16-bit, mftlab.training.master_weights) and the linear warm-up/decay schedule.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch

from mftlab.errors import TrainingError
from mftlab.training import sharding
from mftlab.training.checkpoint import list_checkpoints
from mftlab.training.config import TrainConfig
from mftlab.training.data import Example, label_tokens
from mftlab.training.evaluation import collate, training_nll
from mftlab.training.master_weights import MasterWeights


def lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    """The schedule's factor at each step: linear warm-up over `warmup` steps, then linear decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def accumulate_gradients(
    model,
    accelerator,
    examples: list[Example],
    ids: list[int],
    *,
    micro: int,
    accum: int,
    pad_id: int,
    sharded: bool = False,
) -> torch.Tensor:
    """Forward and backward over this process's share of one step; returns global (nll, label tokens, tokens).

    The loss is the token-weighted mean over the answer tokens of the whole step (all processes,
    all micro-batches), so the gradient does not depend on how the step is split.
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    step_tokens = sum(label_tokens(examples[i]) for i in ids)
    mine = ids[rank * micro * accum : (rank + 1) * micro * accum]
    nll_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)  # read back once per step
    tokens = [0, 0]  # label tokens, input tokens: counted on the host from the CPU batches
    for m in range(accum):
        cpu_batch = collate([examples[i] for i in mine[m * micro : (m + 1) * micro]], pad_id)
        tokens[0] += cpu_batch.num_label_tokens
        tokens[1] += int(cpu_batch.attention_mask.sum())
        batch = cpu_batch.to(accelerator.device)
        # FSDP reduce-scatters every micro-batch into the sharded fp32 gradient (as torchtitan does):
        # skipping the sync would keep a full unsharded gradient on every process until the last one.
        sync = contextlib.nullcontext() if (m == accum - 1 or sharded) else accelerator.no_sync(model)
        with sync:
            with accelerator.autocast():
                nll = training_nll(model, batch)  # no argmax, no host sync
            accelerator.backward(nll * (world / max(step_tokens, 1)))  # x world: DDP and FSDP average gradients
        nll_sum += nll.detach().double()
    stats = torch.cat([nll_sum.reshape(1), torch.tensor(tokens, dtype=torch.float64, device=nll_sum.device)])
    return (accelerator.reduce(stats, "sum") if world > 1 else stats).cpu()


def check_finite_loss(step_loss: float, step: int, out_dir: str) -> None:
    """Stop the run when the loss of optimizer step `step` (1-based) is NaN or infinite."""
    if math.isfinite(step_loss):
        return
    saved = list_checkpoints(out_dir)
    where = f"the last good checkpoint is {saved[-1][1]}" if saved else "no checkpoint was written"
    raise TrainingError(
        f"the loss became {step_loss} at step {step}; {where}. Lower the learning "
        "rate (--score-lr / --lr) or use --precision fp32"
    )


@dataclass
class Optimization:
    """What AdamW steps (the trainable parameters, or their fp32 master copies), the optimizer and its schedule."""

    stepped: dict[str, torch.nn.Parameter]  # what AdamW steps (and checkpoints hold)
    master: MasterWeights | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    max_grad_norm: float

    @classmethod
    def build(
        cls, config: TrainConfig, trainable: dict, total: int, *, sharded: bool, initial: dict | None
    ) -> Optimization:
        """AdamW over `trainable` (name -> parameter); `initial` holds a resumed checkpoint's trainable values.

        FSDP2 keeps its own fp32 copies, so master weights are only made without sharding.
        """
        master = None
        if not sharded and sharding.needs_master(trainable.values(), config.pure_bf16):
            master = MasterWeights(trainable, initial)
        stepped = master.master if master is not None else trainable
        lr = config.score_lr if config.method == "mask" else config.lr
        optimizer = torch.optim.AdamW(list(stepped.values()), lr=lr, weight_decay=config.weight_decay)
        warmup = math.ceil(config.warmup_ratio * total)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(warmup, total))
        return cls(stepped, master, optimizer, scheduler, config.max_grad_norm)

    def step(self) -> float:
        """Clip, step AdamW and the schedule on the accumulated gradients; returns the learning rate used."""
        if self.master is not None:
            self.master.grads_to_master()
        if self.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(list(self.stepped.values()), self.max_grad_norm)
        current_lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        if self.master is not None:
            self.master.master_to_model()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return current_lr

    def state(self) -> dict:
        """The optimizer and schedule state an unsharded checkpoint holds."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load(self, state: dict, *, sharded: bool) -> None:
        """Restore a checkpoint's state (a sharded checkpoint has loaded the optimizer's own already)."""
        if not sharded:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

"""Step-0 damage: how much the initial mask alone costs, measured before MFT trains (issue 13).

With `--score-init random` the step-0 mask is a random prune; a short run or a small
`--score-lr` may never repair it (two random 10% masks of the same layers can differ by a fifth
of a nat). So the trainer evaluates the initial mask and the unmasked model once, logs both as
the step-0 metrics row, and warns in one line when the mask alone raises the validation loss by
more than `STEP0_DAMAGE`.
"""

from __future__ import annotations

import torch

from mftlab.training.evaluation import EvalResult, evaluate

STEP0_DAMAGE = 0.10  # warn when the initial mask raises the validation loss by more than this fraction


def evaluate_step0(
    model, tokenizer, layers: dict, examples, *, batch_size: int, score_init: str, device, distributed: bool = False
) -> tuple[dict, EvalResult, str | None]:
    """(metrics row at step 0, evaluation of the initial mask, warning line or None).

    `layers` are the model's MaskedLinear wrappers holding the step-0 keep-masks; they are
    swapped for all-ones to evaluate the unmasked model and put back afterwards.
    """
    masked = evaluate(model, tokenizer, examples, batch_size, generate=False, device=device, distributed=distributed)
    keep = {n: m.keep for n, m in layers.items()}
    try:
        for m in layers.values():
            m.set_keep(torch.ones_like(m.keep))
        plain = evaluate(model, tokenizer, examples, batch_size, generate=False, device=device, distributed=distributed)
    finally:
        for n, m in layers.items():
            m.set_keep(keep[n])
    row = {
        "step": 0,
        "eval_loss": masked.loss,
        "eval_token_accuracy": masked.token_accuracy,
        "eval_loss_unmasked": plain.loss,
        "eval_token_accuracy_unmasked": plain.token_accuracy,
    }
    return row, masked, step0_warning(masked.loss, plain.loss, score_init)


def step0_warning(masked_loss: float, unmasked_loss: float, score_init: str) -> str | None:
    """The one-line warning when the step-0 mask raises the validation loss by more than 10%, else None."""
    if not masked_loss > unmasked_loss * (1 + STEP0_DAMAGE):
        return None
    hint = (
        "try --score-init magnitude (its step-0 mask is the magnitude mask)"
        if score_init != "magnitude"
        else "try a lower --mask-ratio or other --layers"
    )
    return (
        f"warning: the step-0 mask ({score_init} init) raises the validation loss from {unmasked_loss:.4f} to "
        f"{masked_loss:.4f} (+{masked_loss / unmasked_loss - 1:.0%}) before any training; {hint}"
    )

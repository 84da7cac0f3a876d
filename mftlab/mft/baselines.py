"""Masks made without training: the paper's random-mask and L1 (magnitude) baselines, and the
pruning criteria Wanda and SNIP (scores in mftlab.mft.pruning_scores).

- `random`: a seeded uniform choice of exactly K weights per comparison group.
- `magnitude`: the K weights with the smallest |w| (the paper's "L1 mask").
- `wanda`: the K smallest |W_ij| * ||X_j||_2 over calibration tokens (default granularity: row).
- `snip`: the K smallest |W_ij * dL/dW_ij| over calibration batches.
K and tie-breaking follow mftlab.mft.selection (round half up, ties by index).
"""

from __future__ import annotations

import torch

from mftlab.mask.maskfile import Mask
from mftlab.mft.calibration import Calibration
from mftlab.mft.selection import GRANULARITIES, check_ratio, select_keep
from mftlab.mft.targeting import Target, TargetSpec, resolve_targets, target_weights
from mftlab.options_meta import choice_error
from mftlab.seeding import name_generator

BASELINE_KINDS = ("random", "magnitude", "wanda", "snip")
DATA_KINDS = ("wanda", "snip")  # need calibration data
DEFAULT_GRANULARITY = {"wanda": "row"}  # Wanda compares weights within each output row; others per tensor


def default_granularity(kind: str) -> str:
    return DEFAULT_GRANULARITY.get(kind, "tensor")


SCORE_FORMULAS = {
    "wanda": "|W_ij| * ||X_j||_2 over non-padding calibration tokens (X_j: input feature j)",
    "snip": "|W_ij * dL/dW_ij|, L = token-weighted answer-token loss over the calibration batches",
}


def ranking_values(kind: str, name: str, weight: torch.Tensor, seed: int) -> torch.Tensor:
    """Lower value = masked first."""
    if kind == "magnitude":
        return weight.detach().float().abs()
    if kind == "random":
        generator = name_generator(seed, name)
        return torch.rand(weight.shape, generator=generator)
    raise choice_error("kind", kind, BASELINE_KINDS)


def baseline_mask(
    model: torch.nn.Module,
    kind: str,
    mask_ratio: float,
    spec: TargetSpec,
    *,
    granularity: str | None = None,
    seed: int = 0,
    base_name: str = "",
    calibration: Calibration | None = None,
    progress=None,
) -> tuple[Mask, list[Target]]:
    """A `kind` mask over the targeted weights of `model`, bound to them by fingerprints.

    `granularity` defaults to the kind's own (row for wanda, tensor otherwise); wanda and snip
    need `calibration` (mftlab.mft.calibration), whose description goes into the method metadata, and
    report `progress(tokens_seen, tokens)` over it.
    """
    check_ratio(mask_ratio)
    if kind not in BASELINE_KINDS:
        raise choice_error("kind", kind, BASELINE_KINDS)
    granularity = granularity or default_granularity(kind)
    if granularity not in GRANULARITIES:
        raise choice_error("granularity", granularity, GRANULARITIES)
    targets = resolve_targets(model, spec)
    weights = target_weights(model, targets)
    if kind in DATA_KINDS:
        from mftlab.mft.pruning_scores import criterion_scores

        values = criterion_scores(kind, model, targets, calibration, progress)
    else:
        values = {t.param_name: ranking_values(kind, t.param_name, weights[t.param_name], seed) for t in targets}
    keep = select_keep(values, mask_ratio, granularity, {t.param_name: t.out_axis for t in targets})
    method = {
        "name": kind,
        "mask_ratio": mask_ratio,
        "selection": f"topk-{granularity}",
        "k_rounding": "round-half-up(mask_ratio * n), at most n - 1; ties masked by lower index first",
        "seed": seed,
        "targets": spec.to_dict(),
    }
    if kind in DATA_KINDS:
        method["score"] = SCORE_FORMULAS[kind]
        method["calibration"] = calibration.to_dict()
    return Mask.from_keep(keep, weights, base_name, method), targets


# -- the random baseline over several draws ----------------------------------------------------
def draw_paths(path: str, seeds: list[int]) -> list[str]:
    """Where `baseline --kind random --seeds N` writes its draws: the first seed at `path` itself (as with
    one seed), every further seed S next to it as `<stem>.seed<S>.safetensors`."""
    stem = path[: -len(".safetensors")] if path.endswith(".safetensors") else path
    return [path] + [f"{stem}.seed{s}.safetensors" for s in seeds[1:]]


def shared_masked_fraction(a: Mask, b: Mask) -> float:
    """Fraction of `a`'s masked weights that `b` masks too (two independent random draws: about the ratio)."""
    both = masked = 0
    for name in a.names:
        if name in b.names:
            ma, mb = ~a.keep(name), ~b.keep(name)
            both += int((ma & mb).sum())
            masked += int(ma.sum())
    return both / masked if masked else float("nan")


@torch.no_grad()
def evaluate_draws(model: torch.nn.Module, tokenizer, masks: list[Mask], examples, batch_size: int = 16) -> list[float]:
    """Validation loss of `model` under each mask in turn (the weights are restored after each)."""
    from mftlab.mft.apply import apply_mask_
    from mftlab.models.device import model_device
    from mftlab.models.loading import named_weights
    from mftlab.training.evaluation import evaluate

    weights = named_weights(model)
    device = model_device(model)  # batches go where the model is
    losses = []
    for mask in masks:
        saved = {n: weights[n].detach().clone() for n in mask.names}
        try:
            apply_mask_(model, mask)
            losses.append(evaluate(model, tokenizer, examples, batch_size, generate=False, device=device).loss)
        finally:
            for n, w in saved.items():
                weights[n].copy_(w)
    return losses

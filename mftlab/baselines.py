"""Masks made without training: the paper's random-mask and L1 (magnitude) baselines.

- `random`: a seeded uniform choice of exactly K weights per comparison group.
- `magnitude`: the K weights with the smallest |w| (the paper's "L1 mask").
K and tie-breaking follow mftlab.selection (round half up, ties by index).
"""

from __future__ import annotations

import hashlib

import torch

from mftlab.errors import ConfigError
from mftlab.maskfile import Mask
from mftlab.selection import GRANULARITIES, check_ratio, select_keep
from mftlab.targeting import Target, TargetSpec, resolve_targets, target_weights

KINDS = ("random", "magnitude")


def name_seed(seed: int, name: str) -> int:
    """A 63-bit seed for one parameter, stable across runs, processes and tensor order."""
    digest = hashlib.blake2b(f"{seed}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def ranking_values(kind: str, name: str, weight: torch.Tensor, seed: int) -> torch.Tensor:
    """Lower value = masked first."""
    if kind == "magnitude":
        return weight.detach().float().abs()
    if kind == "random":
        generator = torch.Generator().manual_seed(name_seed(seed, name))
        return torch.rand(weight.shape, generator=generator)
    raise ConfigError.for_option("kind", kind, f"is unknown; choose one of {', '.join(KINDS)}", quote=True)


def baseline_mask(
    model: torch.nn.Module,
    kind: str,
    mask_ratio: float,
    spec: TargetSpec,
    granularity: str = "tensor",
    seed: int = 0,
    base_name: str = "",
) -> tuple[Mask, list[Target]]:
    """A `kind` mask over the targeted weights of `model`, bound to them by fingerprints."""
    check_ratio(mask_ratio)
    if kind not in KINDS:
        raise ConfigError.for_option("kind", kind, f"is unknown; choose one of {', '.join(KINDS)}", quote=True)
    if granularity not in GRANULARITIES:
        raise ConfigError.for_option("granularity", granularity, f"is unknown; choose one of {', '.join(GRANULARITIES)}",
                                      quote=True)
    targets = resolve_targets(model, spec)
    weights = target_weights(model, targets)
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
    return Mask.from_keep(keep, weights, base_name, method), targets

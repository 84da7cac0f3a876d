"""Attaching masked wrappers to a model, choosing the mask from the scores, exporting it.

- `attach_masks(model, targets, ...)` swaps every targeted Linear / Conv1D for a `MaskedLinear`
  (no weights are copied) with seeded initial scores; `detach_masks` puts the originals back.
- `SelectionConfig` + `compute_keep` turn scores into exact keep-masks with the rule the config
  names in `mftlab.mft.selection_rules.SELECTION_RULES`: top-k per tensor / per output row /
  global, or a threshold with a per-tensor floor. `refresh_masks` stores them in the wrappers; the trainer
  calls it once per optimizer step.
- `export_mask` builds the v1 `Mask` (names and layout of the base model's parameters).

Score initialisation (`score_init`):
- `random`: N(0, std²) per weight (the reference code's choice; the step-0 mask is a random prune);
- `magnitude`: std · |W| / mean|W| (the step-0 mask is the magnitude, "L1", mask);
- `uniform`: U(-std, std).
Ranking (`rank_by`): `raw` ranks the scores themselves (default); `abs` ranks |scores| as the
reference code does (a score pushed strongly negative is then kept again).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from mftlab.errors import ConfigError
from mftlab.mask.maskfile import Mask
from mftlab.mft.masked_layer import SCORE_DTYPES, MaskedLinear
from mftlab.mft.selection import GRANULARITIES, check_ratio
from mftlab.mft.selection_rules import SELECTION_RULES, SELECTIONS
from mftlab.mft.targeting import Target
from mftlab.mft.warm_select import WarmSelector
from mftlab.options_meta import between, check_options, choice_error, doc
from mftlab.seeding import name_generator

SCORE_INITS = ("random", "magnitude", "uniform")
RANK_BY = ("raw", "abs")


@dataclass(frozen=True)
class SelectionConfig:
    """How scores become a mask (CONTRIBUTING.md, words): the one object `mftlab.mask_model` takes and
    `TrainConfig.selection` holds.

    Example:
        >>> mftlab.SelectionConfig(mask_ratio=0.05, granularity="row").selection
        'topk'
    """

    mask_ratio: float = field(default=0.1, metadata=doc("Fraction of targeted weights masked (0.1 = the paper's 10%)."))
    selection: str = field(
        default="topk",
        metadata=doc("topk: exact K lowest scores masked; threshold: kept where score > T.", choices=SELECTIONS),
    )
    granularity: str = field(
        default="tensor",
        metadata=doc("topk comparison group: per tensor, per output row, or global.", choices=GRANULARITIES),
    )
    threshold: float = field(
        default=-0.035, metadata=doc("T for --selection threshold (the paper's global MFT uses -0.035).")
    )
    min_keep_ratio: float = field(
        default=0.01,
        metadata=doc(
            "threshold: fraction of each tensor that always stays kept.",
            check=between(0, 1, closed="(]", hint="; use e.g. 0.01"),
        ),
    )
    rank_by: str = field(
        default="raw", metadata=doc("Rank raw scores (default) or |scores| (the reference code).", choices=RANK_BY)
    )

    def __post_init__(self):
        check_options(self)  # selection, granularity, rank_by, min_keep_ratio
        if self.selection == "topk":
            check_ratio(self.mask_ratio)

    def to_dict(self) -> dict:
        return asdict(self)

    def method_fields(self) -> dict:
        """What a mask's `method` metadata records of the selection (the other options are in its config)."""
        return {
            "mask_ratio": self.mask_ratio,
            "selection": self.selection,
            "granularity": self.granularity,
            "rank_by": self.rank_by,
        }


# -- scores -------------------------------------------------------------------------------------
def score_generator(seed: int, name: str) -> torch.Generator:
    """A CPU generator seeded from (seed, parameter name), so each tensor's scores are reproducible alone."""
    return name_generator(seed, name)


def check_score_init(method: str, std: float) -> None:
    if method not in SCORE_INITS:
        raise choice_error("score_init", method, SCORE_INITS)
    if not std > 0:
        raise ConfigError.for_option("score_std", std, "must be positive; the reference code uses 0.02")


def init_scores(
    weight: torch.Tensor, method: str, std: float, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Initial scores with the weight's shape (drawn on the CPU in fp32, then cast)."""
    check_score_init(method, std)
    shape = tuple(weight.shape)
    if weight.is_meta:  # a sharded run's rank > 0: its scores arrive by broadcast from rank 0
        return torch.empty(shape, dtype=dtype, device="meta")
    if method == "random":
        scores = torch.randn(shape, generator=generator) * std
    elif method == "uniform":
        scores = (torch.rand(shape, generator=generator) * 2 - 1) * std
    else:
        magnitude = weight.detach().float().abs().cpu()
        scores = magnitude * (std / magnitude.mean().clamp_min(1e-12))
    return scores.to(dtype)


# -- attach / detach ----------------------------------------------------------------------------
def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def attach_masks(
    model: nn.Module,
    targets: list[Target],
    *,
    score_init: str = "random",
    score_std: float = 0.02,
    score_dtype: str = "fp32",
    seed: int = 0,
) -> dict[str, MaskedLinear]:
    """Replace each targeted module by a MaskedLinear; returns param_name -> wrapper (module order).

    Every base parameter of the model is frozen; only `mask_scores` are trainable.
    """
    if score_dtype not in SCORE_DTYPES:
        raise choice_error("score_dtype", score_dtype, SCORE_DTYPES)
    check_score_init(score_init, score_std)  # before any module is swapped
    for p in model.parameters():
        p.requires_grad_(False)
    layers = {}
    for t in targets:
        parent_name, _, child = t.module_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        if isinstance(base, MaskedLinear):
            raise ConfigError(f"module '{t.module_name}' already carries a mask; detach it first")
        scores = init_scores(
            base.weight, score_init, score_std, score_generator(seed, t.param_name), SCORE_DTYPES[score_dtype]
        )
        wrapper = MaskedLinear(base, t.kind, scores, t.param_name)
        setattr(parent, child, wrapper)
        layers[t.param_name] = wrapper
    return layers


def masked_layers(model: nn.Module) -> dict[str, MaskedLinear]:
    """param_name -> wrapper for every MaskedLinear in `model` (found by type)."""
    return {m.param_name: m for m in _unwrap(model).modules() if isinstance(m, MaskedLinear)}


def detach_masks(model: nn.Module) -> None:
    """Put the original modules back (their weights were never touched)."""
    model = _unwrap(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, MaskedLinear):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, module.base)


# -- selection ----------------------------------------------------------------------------------
def compute_keep(
    layers: dict[str, MaskedLinear], selection: SelectionConfig, warm: WarmSelector | None = None
) -> dict[str, torch.Tensor]:
    """Keep-masks (bool, on each layer's device) chosen from the current scores by `selection`'s rule.

    With `warm` (one per training run), per-tensor and global top-k start from the previous
    step's cut-off: same masks, far less work (see mftlab.mft.warm_select).
    """
    with torch.no_grad():
        return SELECTION_RULES[selection.selection](layers, selection, warm)


def refresh_masks(
    layers: dict[str, MaskedLinear], selection: SelectionConfig, warm: WarmSelector | None = None
) -> dict[str, torch.Tensor]:
    """Recompute every keep-mask from the scores and store it in its wrapper."""
    keep = compute_keep(layers, selection, warm)
    for name, layer in layers.items():
        layer.set_keep(keep[name])
    return keep


def current_keep(layers: dict[str, MaskedLinear]) -> dict[str, torch.Tensor]:
    """The keep-masks the wrappers use now."""
    return {n: m.keep for n, m in layers.items()}


def count_masked(keep: dict[str, torch.Tensor]) -> tuple[int, int]:
    """(masked, total) weight counts."""
    total = sum(k.numel() for k in keep.values())
    kept = sum(int(k.sum()) for k in keep.values())
    return total - kept, total


def count_flips(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> int:
    """Number of weights whose keep bit differs between two masks."""
    return sum(int((a[n] != b[n]).sum()) for n in a)


def export_mask(layers: dict[str, MaskedLinear], base_name: str, method: dict) -> Mask:
    """The v1 mask of the current keep-masks, fingerprinted against the frozen base weights."""
    keep = {n: m.keep.cpu() for n, m in layers.items()}
    weights = {n: m.base.weight.detach() for n, m in layers.items()}
    return Mask.from_keep(keep, weights, base_name, method)

"""`mask_model`: put MFT's masked wrappers on any causal LM and get a handle to drive them.

    handle = mftlab.mask_model(model, targets="all-linear", mask_ratio=0.1)
    optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=2e-5)
    ... loss.backward(); optimizer.step(); optimizer.zero_grad(); handle.refresh() ...
    handle.save("mask.safetensors"); handle.unload()

The handle is a thin layer over `mftlab.mft.masking` (the same wrappers, selection and export the
`mftlab train` loop uses), in the spirit of PEFT's `get_peft_model` / `merge_and_unload`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from mftlab.errors import ConfigError
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.mft.masking import (
    SelectionConfig,
    attach_masks,
    count_flips,
    count_masked,
    current_keep,
    detach_masks,
    export_mask,
    masked_layers,
    refresh_masks,
)
from mftlab.mft.targeting import TargetSpec, resolve_targets
from mftlab.mft.warm_select import WarmSelector


@dataclass(frozen=True)
class RefreshStats:
    """What one `refresh()` changed: the masked fraction now and the bits that flipped."""

    mask_ratio: float
    flips: int


def _base_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or "")


class MaskedModel:
    """A model whose targeted Linear / Conv1D modules carry learnable masks (see `mask_model`).

    Attributes: `model` (the same object that was passed in, modified in place), `layers`
    (parameter name -> MaskedLinear), `selection` (a `SelectionConfig`), `steps` (refreshes so far).
    """

    def __init__(self, model: nn.Module, layers: dict, selection: SelectionConfig, method: dict, base_name: str):
        self.model, self.layers, self.selection = model, layers, selection
        self.method, self.base_name = method, base_name
        self.steps = 0
        self._warm = WarmSelector()
        self._keep = refresh_masks(layers, selection)

    def refresh(self) -> RefreshStats:
        """Recompute every keep-mask from the current scores; call once after each optimizer step.

        Example:
            >>> optimizer.step(); optimizer.zero_grad(); stats = handle.refresh()  # doctest: +SKIP
            >>> stats.mask_ratio, stats.flips  # doctest: +SKIP
            (0.1, 12)
        """
        self._check_attached()
        keep = refresh_masks(self.layers, self.selection, self._warm)
        flips = count_flips(keep, self._keep)
        self._keep = keep
        self.steps += 1
        masked, total = count_masked(keep)
        return RefreshStats(masked / max(total, 1), flips)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The mask scores (the only trainable tensors; every base weight is frozen).

        Example:
            >>> optimizer = torch.optim.AdamW(handle.trainable_parameters(), lr=2e-5)  # doctest: +SKIP
        """
        return [layer.mask_scores for layer in self.layers.values()]

    def keep(self) -> dict[str, torch.Tensor]:
        """Parameter name -> boolean keep-mask in use now (True = kept)."""
        return current_keep(self.layers)

    def export(self) -> Mask:
        """The current masks as a v1 `Mask`, bound to the base weights by fingerprints.

        Example:
            >>> mask = handle.export(); mask.mask_ratio  # doctest: +SKIP
            0.1
        """
        return export_mask(self.layers, self.base_name, dict(self.method, steps=self.steps))

    def save(self, path: str | os.PathLike, codec: str = "packbits") -> str:
        """Write the current masks to `path` (mask.safetensors, format v1, atomically); returns the path.

        Example:
            >>> handle.save("run/mask.safetensors")  # doctest: +SKIP
        """
        save_mask(self.export(), path, codec=codec)
        return os.fspath(path)

    def unload(self) -> nn.Module:
        """Put the original modules back (their weights were never touched); returns the model.

        Example:
            >>> model = handle.unload()  # the model as it was before mask_model  # doctest: +SKIP
        """
        self._check_attached()
        detach_masks(self.model)
        self.layers = {}
        return self.model

    @torch.no_grad()
    def merge(self) -> nn.Module:
        """Zero the masked weights in place and put the plain modules back; returns the model.

        Example:
            >>> model = handle.merge(); model.save_pretrained("mft-model")  # doctest: +SKIP
        """
        self._check_attached()
        for layer in self.layers.values():
            weight = layer.base.weight
            weight.mul_(layer.keep.to(device=weight.device, dtype=weight.dtype))
        return self.unload()

    def _check_attached(self) -> None:
        if not self.layers or not masked_layers(self.model):
            raise ConfigError("this mask handle was unloaded or merged already; call mftlab.mask_model again")

    def __repr__(self) -> str:
        masked, total = count_masked(self._keep) if self.layers else (0, 0)
        return f"MaskedModel({len(self.layers)} tensors, {total:,} weights, {masked:,} masked, steps={self.steps})"


def mask_model(
    model: nn.Module,
    *,
    targets: str = "all-linear",
    layers: str | None = None,
    exclude: str | None = None,
    mask_ratio: float = 0.1,
    granularity: str = "tensor",
    selection: "str | SelectionConfig" = "topk",
    score_init: str = "random",
    seed: int = 0,
    threshold: float = -0.035,
    min_keep_ratio: float = 0.01,
    rank_by: str = "raw",
    score_std: float = 0.02,
    score_dtype: str = "fp32",
    base_name: str | None = None,
) -> MaskedModel:
    """Wrap the targeted modules of `model` (in place) with learnable masks; returns a `MaskedModel`.

    `targets` / `layers` / `exclude` choose the modules (names or suffixes, `re:` regexes,
    `all-linear`; layer ranges such as "0-3,20-23"). `mask_ratio` is the fraction of targeted
    weights masked; `granularity` (tensor | row | global) and `selection` (topk | threshold) say
    how scores become masks, or `selection=SelectionConfig(...)` gives them all as one object (the
    one `TrainConfig.selection` holds; mask_ratio, granularity, threshold, min_keep_ratio and
    rank_by are then taken from it); `score_init` (random | magnitude | uniform) and `seed` fix the
    initial scores. The keep-masks are computed once here; call `refresh()` after each step.

    Example:
        >>> import mftlab
        >>> model = mftlab.load_model("micro-llama").model
        >>> handle = mftlab.mask_model(model, targets="q_proj,v_proj", mask_ratio=0.1)
        >>> round(handle.export().mask_ratio, 2)
        0.1
        >>> _ = handle.unload()
    """
    if isinstance(selection, SelectionConfig):
        config = selection
    else:
        config = SelectionConfig(
            mask_ratio=mask_ratio,
            selection=selection,
            granularity=granularity,
            threshold=threshold,
            min_keep_ratio=min_keep_ratio,
            rank_by=rank_by,
        )
    spec = TargetSpec.parse(targets, layers, exclude)
    found = resolve_targets(model, spec)
    wrappers = attach_masks(
        model, found, score_init=score_init, score_std=score_std, score_dtype=score_dtype, seed=seed
    )
    method = {
        "name": "mft",
        **config.method_fields(),
        "seed": seed,
        "score_init": score_init,
        "targets": spec.to_dict(),
    }
    name = base_name if base_name is not None else _base_name(model)
    return MaskedModel(model, wrappers, config, method, name)

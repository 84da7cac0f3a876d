"""The selection rules (`--selection`): how a layer's scores become its keep-mask, whole or sharded.

`SELECTION_RULES` maps each rule to the function that applies it to whole score tensors;
`SHARDED_SELECTION_RULES`, beside it, to the function that gives the same masks when every process
holds a slice of each tensor (FSDP; `mftlab.mft.sharded_selection`). A new rule is one function of
each kind and one entry in each table; a rule missing from the sharded table is refused under
`--sharding fsdp` with a message naming the rules that exist there.

- `topk`: exactly K lowest scores masked per comparison group. The group is the granularity
  (`mftlab.mft.selection.GRANULARITY_RULES`, sharded: `SHARDED_GRANULARITY_RULES`), found in those
  tables and nowhere else; a training run's `WarmSelector` may answer a granularity faster with the
  same masks.
- `threshold`: kept where score > T, with a per-tensor floor of kept weights.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import torch

from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.selection import keep_threshold, select_keep
from mftlab.mft.sharded_selection import ShardedValues, sharded_keep, sharded_threshold
from mftlab.mft.targeting import output_axis
from mftlab.mft.warm_select import WarmSelector

if TYPE_CHECKING:  # masking.py defines SelectionConfig and imports this module's table
    from mftlab.mft.masking import SelectionConfig


class Rankings(Mapping):
    """name -> the values a layer's scores are ranked by (raw or |scores|), computed when read.

    Lazy on purpose: with `rank_by abs`, a per-tensor rule then holds one |scores| copy at a time
    instead of a copy of every score tensor at once.
    """

    def __init__(self, layers: dict[str, MaskedLinear], rank_by: str):
        self.layers, self.rank_by = layers, rank_by

    def __getitem__(self, name: str) -> torch.Tensor:
        scores = self.layers[name].mask_scores.detach()
        return scores.abs() if self.rank_by == "abs" else scores

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)


def _out_axes(layers: dict[str, MaskedLinear]) -> dict[str, int]:
    return {n: output_axis(m.kind) for n, m in layers.items()}


# -- whole tensors --------------------------------------------------------------------------------
def keep_topk(
    layers: dict[str, MaskedLinear], selection: SelectionConfig, warm: WarmSelector | None = None
) -> dict[str, torch.Tensor]:
    """Rule `topk`: exactly K lowest scores masked per comparison group (`selection.granularity`)."""
    values = Rankings(layers, selection.rank_by)
    faster = warm.rule(selection.granularity) if warm is not None else None
    if faster is not None:
        return faster(values, selection.mask_ratio)
    return select_keep(values, selection.mask_ratio, selection.granularity, _out_axes(layers))


def keep_above_threshold(
    layers: dict[str, MaskedLinear], selection: SelectionConfig, warm: WarmSelector | None = None
) -> dict[str, torch.Tensor]:
    """Rule `threshold`: kept where score > T, with a per-tensor floor of kept weights."""
    values = Rankings(layers, selection.rank_by)
    return {n: keep_threshold(v, selection.threshold, selection.min_keep_ratio) for n, v in values.items()}


# -- sharded tensors (every process holds a slice; all take part) -------------------------------------
def sharded_keep_topk(
    layers: dict[str, MaskedLinear], values: dict[str, ShardedValues], selection: SelectionConfig
) -> dict[str, torch.Tensor]:
    """Rule `topk` on sharded rankings: local keep-masks equal to `keep_topk`'s on the whole tensors."""
    return sharded_keep(values, selection.mask_ratio, selection.granularity, _out_axes(layers))


def sharded_keep_above_threshold(
    layers: dict[str, MaskedLinear], values: dict[str, ShardedValues], selection: SelectionConfig
) -> dict[str, torch.Tensor]:
    """Rule `threshold` on sharded rankings: local keep-masks equal to `keep_above_threshold`'s."""
    return sharded_threshold(values, selection.threshold, selection.min_keep_ratio)


# Name -> rule, whole and sharded side by side (`--selection` offers the keys of the first).
SELECTION_RULES = {"topk": keep_topk, "threshold": keep_above_threshold}
SHARDED_SELECTION_RULES = {"topk": sharded_keep_topk, "threshold": sharded_keep_above_threshold}
SELECTIONS = tuple(SELECTION_RULES)

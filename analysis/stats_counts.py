"""The counting pass of `compute_mask_stats` (analysis/stats.py): inputs read and checked, one record per tensor,
additive totals per layer, projection and overall, and the shared |w| / |Δw| histograms.

Every count here is a sum over tensors, so a layer's or projection's totals are exact sums of its
tensors' and `compute_mask_stats` only has to turn them into rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from mftlab.analysis.concentration import summarize_units
from mftlab.analysis.groups import TensorGroup, group_keys, tensor_groups
from mftlab.analysis.overlap import PairCounts, pair_counts
from mftlab.analysis.packed_counts import col_kept, count, row_kept
from mftlab.analysis.results import finite
from mftlab.analysis.weight_stats import histogram, histogram_quantile, log_bins, split_stats
from mftlab.errors import MaskMismatchError
from mftlab.mask.maskfile import Mask
from mftlab.mask.packing import pack_bits
from mftlab.mft.selection import keep_tensor
from mftlab.mft.targeting import output_axes
from mftlab.models.loading import named_weights

_OVERLAP_KEYS = ("shared_masked", "expected_shared", "jaccard", "lift", "z", "log10_p")


# -- helpers ----------------------------------------------------------------------------------
def _unit_fractions(packed: np.ndarray, shape: tuple[int, ...], out_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """(output-unit, input-unit) masked fractions of a 2-D tensor; empty arrays otherwise."""
    if len(shape) != 2:
        return np.zeros(0), np.zeros(0)
    rows, cols = shape
    row_masked = 1.0 - row_kept(packed, shape) / cols  # (R,)
    col_masked = 1.0 - col_kept(packed, shape) / rows  # (C,)
    return (row_masked, col_masked) if out_axis == 0 else (col_masked, row_masked)


def overlap_summary(counts: PairCounts) -> dict:
    """The overlap metrics a stats row reports, plus the share of the mask's masked weights the reference masks."""
    metrics = counts.metrics()
    out = {k: metrics[k] for k in _OVERLAP_KEYS}
    out["fraction_of_masked"] = finite(counts.shared / counts.masked_a) if counts.masked_a else None
    return out


def _abs_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).abs().reshape(-1).numpy()


def _check_base(mask: Mask, pretrained: dict[str, torch.Tensor]) -> None:
    for name in mask.packed:
        if name not in pretrained or tuple(pretrained[name].shape) != mask.shapes[name]:
            what = "lacks" if name not in pretrained else f"has shape {list(pretrained[name].shape)} for"
            raise MaskMismatchError(
                f"the pre-trained model (--base) {what} tensor '{name}' {list(mask.shapes[name])}; "
                "pass the model the mask's base was fine-tuned from"
            )


def _reference_counts(packed: np.ndarray, shape: tuple[int, ...], scores: torch.Tensor, ratio: float) -> PairCounts:
    """The mask against the reference mask that masks the `ratio` lowest of the tensor's flat `scores`."""
    reference_keep = keep_tensor(scores.reshape(shape), ratio)
    return pair_counts(packed, pack_bits(reference_keep), shape)


# -- inputs -----------------------------------------------------------------------------------
@dataclass
class StatsInputs:
    """The mask with the models' weights checked against it, and where each tensor is reported."""

    mask: Mask
    names: list[str]  # the masked tensors, in the mask's order
    weights: dict[str, torch.Tensor] | None  # the base the mask was learned on (--model)
    before: dict[str, torch.Tensor] | None  # the pre-trained model (--base)
    axes: dict[str, int]  # name -> axis of the output units (0: Linear rows, 1: Conv1D columns)
    groups: dict[str, TensorGroup]
    notes: list[str]


def read_inputs(mask: Mask, model=None, pretrained=None, force: bool = False) -> StatsInputs:
    """Check `model` and `pretrained` against `mask` (MaskMismatchError) and note what the statistics assume."""
    names = list(mask.packed)
    notes = []
    weights = named_weights(model) if model is not None else None
    before = named_weights(pretrained) if pretrained is not None else None
    if weights is not None:
        differing = mask.check_fits(weights, force=force)
        if differing:
            notes.append(
                f"{len(differing)} tensors differ from the mask's base (fingerprints); "
                "statistics use the given model (--force)"
            )
    if before is not None:
        _check_base(mask, before)
    all_axes = output_axes(model) if model is not None else {}
    if model is None:
        notes.append("no --model: output units are taken as rows (Linear layout)")
    axes = {n: all_axes.get(n, 0) for n in names}
    return StatsInputs(mask, names, weights, before, axes, tensor_groups(names), notes)


# -- sums -------------------------------------------------------------------------------------
@dataclass
class SplitHistogram:
    """Masked and kept values counted in log10 bins shared by all tensors, so counts add up."""

    edges: np.ndarray
    masked: np.ndarray = field(init=False)
    kept: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.masked = np.zeros(len(self.edges) - 1, dtype=np.int64)
        self.kept = np.zeros(len(self.edges) - 1, dtype=np.int64)

    def add(self, values: np.ndarray, keep: np.ndarray) -> dict:
        """Count one tensor's flat `values` (keep: its flat bits); returns their masked / kept quantiles."""
        self.masked += histogram(values[~keep], self.edges)
        self.kept += histogram(values[keep], self.edges)
        return split_stats(values, keep)

    def to_dict(self) -> dict:
        return {
            "log10_edges": [finite(e, 6) for e in self.edges],
            "masked": [int(c) for c in self.masked],
            "kept": [int(c) for c in self.kept],
            "median_masked": histogram_quantile(self.masked, self.edges, 0.5),
            "median_kept": histogram_quantile(self.kept, self.edges, 0.5),
        }


def new_histograms(inputs: StatsInputs) -> dict[str, SplitHistogram]:
    """'weight' (|w|, with a model) and 'delta' (|w - w_pretrained|, with both), binned over every tensor."""
    weights, before, names = inputs.weights, inputs.before, inputs.names
    hists = {}
    if weights is not None:
        hists["weight"] = SplitHistogram(log_bins(_abs_numpy(weights[n]) for n in names))
    if before is not None:
        hists["delta"] = SplitHistogram(log_bins(_abs_numpy(weights[n] - before[n]) for n in names))
    return hists


@dataclass
class GroupTotals:
    """Additive counts of a group of tensors (one tensor, a layer, a projection or all)."""

    numel: int = 0
    masked: int = 0
    tensors: int = 0
    out_units: list[np.ndarray] = field(default_factory=list)  # per tensor: output-unit masked fractions
    in_units: list[np.ndarray] = field(default_factory=list)
    magnitude: PairCounts = field(default_factory=PairCounts)  # against the magnitude mask (with a model)
    delta: PairCounts = field(default_factory=PairCounts)  # against the K most-changed weights (with --base)

    def add(self, other: GroupTotals) -> None:
        self.numel += other.numel
        self.masked += other.masked
        self.tensors += other.tensors
        self.out_units += other.out_units
        self.in_units += other.in_units
        self.magnitude.add(other.magnitude)
        self.delta.add(other.delta)

    def counts(self) -> dict:
        """numel, masked, masked fraction and the output / input unit concentration of the group."""
        return {
            "numel": self.numel,
            "masked": self.masked,
            "masked_fraction": finite(self.masked / self.numel),
            "output": summarize_units(np.concatenate(self.out_units)),
            "input": summarize_units(np.concatenate(self.in_units)),
        }


# -- one tensor -------------------------------------------------------------------------------
def tensor_stats(inputs: StatsInputs, name: str, hists: dict[str, SplitHistogram]) -> tuple[dict, GroupTotals]:
    """One tensor's record and its totals; adds its |w| and |Δw| to `hists`."""
    mask, group = inputs.mask, inputs.groups[name]
    shape, packed = mask.shapes[name], mask.packed[name]
    numel = math.prod(shape) if shape else 1
    masked = numel - count(packed)
    out_units, in_units = _unit_fractions(packed, shape, inputs.axes[name])
    part = GroupTotals(numel, masked, 1, [out_units], [in_units])
    record = {
        "name": name,
        "layer": group.layer,
        "projection": group.projection,
        "shape": list(shape),
        "out_axis": inputs.axes[name],
    } | part.counts()
    if inputs.weights is None:
        return record, part
    keep = mask.keep(name).reshape(-1).numpy()
    w = _abs_numpy(inputs.weights[name])
    record["weight"] = hists["weight"].add(w, keep)
    part.magnitude = _reference_counts(packed, shape, torch.from_numpy(w), masked / numel)  # the K smallest |w|
    record["magnitude_overlap"] = overlap_summary(part.magnitude)
    if inputs.before is not None:
        d = _abs_numpy(inputs.weights[name] - inputs.before[name])
        record["delta"] = hists["delta"].add(d, keep)
        part.delta = _reference_counts(packed, shape, -torch.from_numpy(d), masked / numel)  # the K largest |Δw|
        record["delta_overlap"] = overlap_summary(part.delta)
    return record, part


def count_tensors(
    inputs: StatsInputs, hists: dict[str, SplitHistogram], progress=None
) -> tuple[list[dict], dict[tuple[str, str], GroupTotals]]:
    """Every tensor's record, and the totals per (level, group) key (layer, projection, overall).

    `progress(done, total)` is called per tensor.
    """
    keys = group_keys(inputs.groups)
    records, totals = [], {}
    for done, name in enumerate(inputs.names, 1):
        record, part = tensor_stats(inputs, name, hists)
        records.append(record)
        for key in keys[name][1:]:  # [0] is the tensor itself
            totals.setdefault(key, GroupTotals()).add(part)
        if progress is not None:
            progress(done, len(inputs.names))
    return records, totals

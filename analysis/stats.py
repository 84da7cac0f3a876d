"""Sparsity statistics of one mask: where the masked weights are, and what they were.

- Masked fraction per tensor, layer, projection and overall, counted on the packed bytes.
- Concentration over output units and input units (max, quantiles and Gini of per-unit masked
  fractions, Lorenz curves per projection). Output units are the rows of a Linear weight and
  the columns of a GPT-2 Conv1D weight; without a model every tensor is taken as Linear-shaped.
- With the base model (the weights the mask was learned on): |w| of masked versus kept weights,
  and the overlap with the magnitude mask at the same per-tensor ratio (the K smallest |w|).
- With the pre-trained model too: |w_base - w_pretrained| of masked versus kept weights, and the
  overlap with the K most-changed weights (lift > 1: MFT removes what fine-tuning changed most).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from mftlab.analysis.concentration import lorenz, summarize_units
from mftlab.analysis.groups import OVERALL, group_keys, projection_order, sorted_layers, tensor_groups
from mftlab.analysis.overlap import PairCounts, pair_counts
from mftlab.analysis.packed_counts import col_kept, count, row_kept
from mftlab.analysis.results import finite
from mftlab.analysis.weight_stats import histogram, histogram_quantile, log_bins, split_stats
from mftlab.errors import MaskMismatchError
from mftlab.files.results import header, write_result
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


def _overlap_summary(counts: PairCounts) -> dict:
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


# -- result -----------------------------------------------------------------------------------
@dataclass
class StatsResult:
    source: str
    mask_ratio: float
    numel: int
    has_weights: bool
    has_delta: bool
    notes: list[str] = field(default_factory=list)
    tensors: list[dict] = field(default_factory=list)
    groups: list[dict] = field(default_factory=list)  # layer, projection, overall rows
    heatmap: dict = field(default_factory=dict)
    concentration: dict = field(default_factory=dict)
    histograms: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            **header("stats"),
            "source": self.source,
            "mask_ratio": finite(self.mask_ratio),
            "numel": self.numel,
            "has_weights": self.has_weights,
            "has_delta": self.has_delta,
            "notes": self.notes,
            "definitions": {
                "masked_fraction": "masked weights (bit 0) / weights, in that group",
                "output/input": (
                    "per output unit (row of Linear, column of Conv1D) and per input unit: masked fractions;"
                    " gini over units"
                ),
                "weight": "|w| of the base model, masked versus kept",
                "magnitude_overlap": (
                    "overlap with the magnitude mask at the same per-tensor ratio (the K smallest |w|);"
                    " lift vs independent"
                ),
                "delta": "|w_base - w_pretrained|, masked versus kept",
                "delta_overlap": (
                    "overlap with the K most-changed weights per tensor; lift > 1 means the mask removes what"
                    " fine-tuning changed most"
                ),
            },
            "tensors": self.tensors,
            "groups": self.groups,
            "heatmap": self.heatmap,
            "concentration": self.concentration,
            "histograms": self.histograms,
        }

    def csv_rows(self) -> list[dict]:
        rows = [{"level": "tensor", "group": t["name"]} | t for t in self.tensors] + self.groups
        return [_flatten({k: v for k, v in r.items() if k not in ("name", "shape")}) for r in rows]

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write stats.json and stats.csv into `folder` (made if needed); `mftlab plot` draws them."""
        return write_result(folder, "stats", self.to_dict(), rows=self.csv_rows())


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out |= _flatten(v, key + "_")
        elif not isinstance(v, list):
            out[key] = v
    return out


# -- main -------------------------------------------------------------------------------------
def mask_stats(
    mask: Mask,
    model: torch.nn.Module | None = None,
    pretrained: torch.nn.Module | None = None,
    force: bool = False,
    source: str = "",
    progress=None,
) -> StatsResult:
    """Statistics of `mask`; `model` is its base (fine-tuned) model, `pretrained` the model before fine-tuning.

    Raises MaskMismatchError when the mask does not fit `model` (fingerprints: unless `force`)
    or `pretrained` lacks a masked tensor. `progress(done, total)` is called per tensor.
    """
    if pretrained is not None and model is None:
        raise MaskMismatchError("--base (the pre-trained model) needs --model (the base the mask was learned on) too")
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
    axes = {n: all_axes.get(n, 0) for n in names}
    if model is None:
        notes.append("no --model: output units are taken as rows (Linear layout)")
    groups = tensor_groups(names)
    keys = group_keys(groups)

    w_edges = log_bins(_abs_numpy(weights[n]) for n in names) if weights is not None else None
    d_edges = log_bins(_abs_numpy(weights[n] - before[n]) for n in names) if before is not None else None
    hist = {"weight": {"masked": 0, "kept": 0}, "delta": {"masked": 0, "kept": 0}}

    totals: dict[tuple, dict] = {}
    tensors = []
    for done, name in enumerate(names, 1):
        shape, packed = mask.shapes[name], mask.packed[name]
        numel = math.prod(shape) if shape else 1
        masked = numel - count(packed)
        out_units, in_units = _unit_fractions(packed, shape, axes[name])
        rec = {
            "name": name,
            "layer": groups[name].layer,
            "projection": groups[name].projection,
            "shape": list(shape),
            "out_axis": axes[name],
            "numel": numel,
            "masked": masked,
            "masked_fraction": finite(masked / numel),
            "output": summarize_units(out_units),
            "input": summarize_units(in_units),
        }
        mag = delta_ov = None
        if weights is not None:
            keep = mask.keep(name).reshape(-1).numpy()
            w = _abs_numpy(weights[name])
            rec["weight"] = split_stats(w, keep)
            hist["weight"]["masked"] += histogram(w[~keep], w_edges)
            hist["weight"]["kept"] += histogram(w[keep], w_edges)
            mag_keep = keep_tensor(torch.from_numpy(w).reshape(shape), masked / numel)
            mag = pair_counts(packed, pack_bits(mag_keep), shape)
            rec["magnitude_overlap"] = _overlap_summary(mag)
            if before is not None:
                d = _abs_numpy(weights[name] - before[name])
                rec["delta"] = split_stats(d, keep)
                hist["delta"]["masked"] += histogram(d[~keep], d_edges)
                hist["delta"]["kept"] += histogram(d[keep], d_edges)
                top_changed = keep_tensor(-torch.from_numpy(d).reshape(shape), masked / numel)
                delta_ov = pair_counts(packed, pack_bits(top_changed), shape)
                rec["delta_overlap"] = _overlap_summary(delta_ov)
        tensors.append(rec)
        for key in keys[name][1:]:
            tot = totals.setdefault(
                key,
                {
                    "numel": 0,
                    "masked": 0,
                    "tensors": 0,
                    "out": [],
                    "in": [],
                    "mag": PairCounts(),
                    "delta": PairCounts(),
                },
            )
            tot["numel"] += numel
            tot["masked"] += masked
            tot["tensors"] += 1
            tot["out"].append(out_units)
            tot["in"].append(in_units)
            if mag is not None:
                tot["mag"].add(mag)
            if delta_ov is not None:
                tot["delta"].add(delta_ov)
        if progress is not None:
            progress(done, len(names))

    result = StatsResult(source, mask.mask_ratio, mask.total, weights is not None, before is not None, notes, tensors)
    layers = sorted_layers({str(g.layer) for g in groups.values() if g.layer is not None})
    projections = projection_order([groups[n].projection for n in names])
    for level, group in (
        [("layer", x) for x in layers] + [("projection", p) for p in projections] + [("overall", OVERALL)]
    ):
        tot = totals[(level, group)]
        row = {
            "level": level,
            "group": group,
            "tensors": tot["tensors"],
            "numel": tot["numel"],
            "masked": tot["masked"],
            "masked_fraction": finite(tot["masked"] / tot["numel"]),
            "output": summarize_units(np.concatenate(tot["out"])),
            "input": summarize_units(np.concatenate(tot["in"])),
        }
        if weights is not None:
            row["magnitude_overlap"] = _overlap_summary(tot["mag"])
        if before is not None:
            row["delta_overlap"] = _overlap_summary(tot["delta"])
        result.groups.append(row)
    result.heatmap = _heatmap(tensors, layers, projections)
    result.concentration = {
        axis: {
            p: {
                "lorenz": lorenz(np.concatenate(totals[("projection", p)][key])),
                "gini": _find(result.groups, "projection", p)[axis].get("gini"),
            }
            for p in projections
        }
        for axis, key in (("output", "out"), ("input", "in"))
    }
    for kind, edges in (("weight", w_edges), ("delta", d_edges)):
        if edges is not None:
            h = hist[kind]
            result.histograms[kind] = {
                "log10_edges": [finite(e, 6) for e in edges],
                "masked": [int(c) for c in h["masked"]],
                "kept": [int(c) for c in h["kept"]],
                "median_masked": histogram_quantile(h["masked"], edges, 0.5),
                "median_kept": histogram_quantile(h["kept"], edges, 0.5),
            }
    return result


def _find(rows: list[dict], level: str, group: str) -> dict:
    return next(r for r in rows if r["level"] == level and r["group"] == group)


def _heatmap(tensors: list[dict], layers: list[str], projections: list[str]) -> dict:
    """layers x projections masked fraction (None where a layer has no such tensor)."""
    cells: dict[tuple, list[int]] = {}
    for t in tensors:
        if t["layer"] is None:
            continue
        c = cells.setdefault((str(t["layer"]), t["projection"]), [0, 0])
        c[0] += t["masked"]
        c[1] += t["numel"]
    grid = [
        [finite(cells[(layer, p)][0] / cells[(layer, p)][1]) if (layer, p) in cells else None for p in projections]
        for layer in layers
    ]
    used = [j for j, p in enumerate(projections) if any(row[j] is not None for row in grid)]
    return {
        "layers": [int(x) for x in layers],
        "projections": [projections[j] for j in used],
        "masked_fraction": [[row[j] for j in used] for row in grid],
    }

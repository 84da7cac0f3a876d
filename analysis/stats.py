"""Sparsity statistics of one mask: where the masked weights are, and what they were.

- Masked fraction per tensor, layer, projection and overall, counted on the packed bytes.
- Concentration over output units and input units (max, quantiles and Gini of per-unit masked
  fractions, Lorenz curves per projection). Output units are the rows of a Linear weight and
  the columns of a GPT-2 Conv1D weight; without a model every tensor is taken as Linear-shaped.
- With the base model (the weights the mask was learned on): |w| of masked versus kept weights,
  and the overlap with the magnitude mask at the same per-tensor ratio (the K smallest |w|).
- With the pre-trained model too: |w_base - w_pretrained| of masked versus kept weights, and the
  overlap with the K most-changed weights (lift > 1: MFT removes what fine-tuning changed most).

The counting pass (inputs checked, one record per tensor, additive totals) is analysis/stats_counts.py;
this module turns its totals into the StatsResult rows and says what `mftlab stats` prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from mftlab.analysis.concentration import lorenz
from mftlab.analysis.groups import OVERALL, projection_order, sorted_layers
from mftlab.analysis.results import finite
from mftlab.analysis.stats_counts import (
    GroupTotals,
    SplitHistogram,
    StatsInputs,
    count_tensors,
    new_histograms,
    overlap_summary,
    read_inputs,
)
from mftlab.errors import MaskMismatchError
from mftlab.files.results import header, write_result
from mftlab.mask.maskfile import Mask

if TYPE_CHECKING:
    from mftlab.analysis.dynamics import DynamicsResult


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


def summary_lines(result: StatsResult, dynamics: DynamicsResult | None = None) -> list[str]:
    """What `mftlab stats` prints: the notes, the overall masked fraction and overlaps, the run's flips."""
    lines = [f"note: {note}" for note in result.notes + (dynamics.notes if dynamics is not None else [])]
    overall = result.groups[-1]
    lines.append(
        f"{result.source}: {overall['masked']:,} of {overall['numel']:,} weights masked "
        f"({overall['masked_fraction']:.4%}) in {len(result.tensors)} tensors; "
        f"row Gini {_num(overall['output'].get('gini'), '.3f')}"
    )
    for key, reference in (("magnitude_overlap", "the magnitude mask"), ("delta_overlap", "the most-changed weights")):
        if key in overall:
            overlap = overall[key]
            lines.append(
                f"overlap with {reference}: {_num(overlap['fraction_of_masked'], '.2%')} of masked weights "
                f"(lift {_num(overlap['lift'])})"
            )
    if dynamics is not None:
        lines.append(f"dynamics: {len(dynamics.labels)} snapshots, {sum(dynamics.flips['all']):,} flips in total")
    return lines


def _num(value, spec: str = ".2f") -> str:
    return "n/a" if value is None else format(value, spec)


# -- main -------------------------------------------------------------------------------------
def require_model_with_base(model, pretrained) -> None:
    """A pre-trained model (--base) is compared with the base the mask was learned on, so it needs --model."""
    if pretrained is not None and model is None:
        raise MaskMismatchError("--base (the pre-trained model) needs --model (the base the mask was learned on) too")


def compute_mask_stats(
    mask: Mask,
    model: torch.nn.Module | None = None,
    pretrained: torch.nn.Module | None = None,
    *,
    force: bool = False,
    source: str = "",
    progress=None,
) -> StatsResult:
    """Statistics of `mask`; `model` is its base (fine-tuned) model, `pretrained` the model before fine-tuning.

    Raises MaskMismatchError when the mask does not fit `model` (fingerprints: unless `force`)
    or `pretrained` lacks a masked tensor. `progress(done, total)` is called per tensor.
    """
    require_model_with_base(model, pretrained)
    inputs = read_inputs(mask, model, pretrained, force=force)
    hists = new_histograms(inputs)
    tensors, totals = count_tensors(inputs, hists, progress)
    return _result(inputs, tensors, totals, hists, source=source)


def _result(
    inputs: StatsInputs,
    tensors: list[dict],
    totals: dict[tuple[str, str], GroupTotals],
    hists: dict[str, SplitHistogram],
    *,
    source: str,
) -> StatsResult:
    """The StatsResult of the counted tensors: group rows, heatmap, concentration and histograms."""
    has_weights, has_delta = inputs.weights is not None, inputs.before is not None
    mask, groups = inputs.mask, inputs.groups
    result = StatsResult(source, mask.mask_ratio, mask.total, has_weights, has_delta, inputs.notes, tensors)
    layers = sorted_layers({str(g.layer) for g in groups.values() if g.layer is not None})
    projections = projection_order([groups[n].projection for n in inputs.names])
    order = [("layer", x) for x in layers] + [("projection", p) for p in projections] + [("overall", OVERALL)]
    result.groups = [_group_row(level, group, totals[(level, group)], has_weights, has_delta) for level, group in order]
    result.heatmap = _heatmap(tensors, layers, projections)
    result.concentration = _concentration(totals, result.groups, projections)
    result.histograms = {kind: hist.to_dict() for kind, hist in hists.items()}
    return result


def _group_row(level: str, group: str, totals: GroupTotals, has_weights: bool, has_delta: bool) -> dict:
    row = {"level": level, "group": group, "tensors": totals.tensors} | totals.counts()
    if has_weights:
        row["magnitude_overlap"] = overlap_summary(totals.magnitude)
    if has_delta:
        row["delta_overlap"] = overlap_summary(totals.delta)
    return row


def _concentration(totals: dict[tuple[str, str], GroupTotals], rows: list[dict], projections: list[str]) -> dict:
    """Per projection, over output and input units: the Lorenz curve and Gini of per-unit masked fractions."""
    return {
        axis: {
            p: {
                "lorenz": lorenz(np.concatenate(getattr(totals[("projection", p)], units))),
                "gini": _find(rows, "projection", p)[axis].get("gini"),
            }
            for p in projections
        }
        for axis, units in (("output", "out_units"), ("input", "in_units"))
    }


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

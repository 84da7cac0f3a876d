"""One-vs-many overlap: a reference mask (usually MFT's) against each other mask (pruning criteria,
random), per tensor (= one layer and projection), layer, projection and overall.

Counts are those of `analysis.overlap` (packed bits, exact): shared masked weights, the number
expected if the two masks were independent at their own per-tensor ratios, lift = shared /
expected (1 = chance), and `fraction_of_reference` = shared / masked by the reference (the share of
the reference's masked set that the other mask masks too; chance = the other mask's ratio).
With scores (see analysis.criteria), each row also carries Spearman's rho between the reference's
scores and the other mask's criterion scores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from mftlab.analysis.criteria import mask_criterion_scores, run_scores, spearman
from mftlab.analysis.groups import OVERALL, group_keys, projection_order, sorted_layers, tensor_groups
from mftlab.analysis.overlap import PairCounts, default_labels, load_with_source, pair_counts, shared_tensors
from mftlab.analysis.packed_counts import count
from mftlab.analysis.results import finite
from mftlab.errors import MaskMismatchError
from mftlab.files.results import header, write_result

CORRELATION_NOTE = "Spearman's rho per tensor (average ranks); groups: mean over tensors weighted by weights"


@dataclass
class ReferenceResult:
    reference: str  # label of the reference mask
    reference_source: str
    reference_method: str
    labels: list[str]  # the other masks
    sources: list[str]
    methods: list[str]  # method name of each other mask (wanda, snip, magnitude, random, ...)
    tensors: list[str]
    layers: list[str] = field(default_factory=list)
    projections: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)  # one per (level, group, mask)
    notes: list[str] = field(default_factory=list)
    scores: dict | None = None  # {"run", "checkpoint_step"} when rank correlations were computed
    reference_meta: dict = field(default_factory=dict)  # the reference's rank_by and steps (not saved)

    def to_dict(self) -> dict:
        return {
            **header("reference_overlap"),
            "reference": self.reference,
            "reference_source": self.reference_source,
            "reference_method": self.reference_method,
            "labels": self.labels,
            "sources": self.sources,
            "methods": self.methods,
            "tensors": self.tensors,
            "layers": self.layers,
            "projections": self.projections,
            "notes": self.notes,
            "scores": self.scores,
            "definitions": {
                "shared_masked": "weights masked by both the reference and this mask",
                "expected_shared": "sum over tensors of masked_a * masked_b / numel (independent masks)",
                "lift": "shared_masked / expected_shared (1 = chance)",
                "fraction_of_reference": "shared_masked / masked by the reference",
                "chance_fraction": "masked by this mask / numel: fraction_of_reference expected by chance",
                "spearman": CORRELATION_NOTE,
            },
            "rows": self.rows,
        }

    def csv_rows(self) -> list[dict]:
        return self.rows

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write reference_overlap.json and .csv into `folder` (made if needed); `mftlab plot` draws them."""
        return write_result(folder, "reference_overlap", self.to_dict(), rows=self.csv_rows())

    def row(self, label: str, level: str = "overall", group: str = OVERALL) -> dict:
        return next(r for r in self.rows if r["mask"] == label and r["level"] == level and r["group"] == group)


def _metrics(counts: PairCounts) -> dict:
    m = counts.metrics()
    m["fraction_of_reference"] = finite(counts.shared / counts.masked_a) if counts.masked_a else None
    m["chance_fraction"] = finite(counts.masked_b / counts.numel) if counts.numel else None
    return m


def reference_overlap(reference, others: list, labels: list[str] | None = None, force: bool = False) -> ReferenceResult:
    """Overlap of `reference` (a Mask or path) with each of `others`; see the module doc."""
    ref, ref_source = load_with_source(reference)
    loaded = [load_with_source(m) for m in others]
    if not loaded:
        raise MaskMismatchError("--reference needs at least one other MASK to compare with; pass mask files")
    masks, sources = [m for m, _ in loaded], [s for _, s in loaded]
    labels = list(labels) if labels else default_labels(sources)
    if len(labels) != len(masks):
        raise MaskMismatchError(f"--labels has {len(labels)} names for {len(masks)} masks; give one label per mask")
    ref_label = ref.method.get("name") or "reference"
    if ref_label in labels:
        ref_label = f"{ref_label} (reference)"
    if len(set(labels)) != len(labels):
        raise MaskMismatchError(f"--labels {','.join(labels)} repeats a name; give each mask its own label")
    names, notes = shared_tensors([ref] + masks, [ref_label] + labels, force)
    groups = tensor_groups(names)
    keys = group_keys(groups)
    totals: dict[tuple, PairCounts] = {}
    for name in names:
        shape = ref.shapes[name]
        kept_ref = count(ref.packed[name])
        for i, mask in enumerate(masks):
            counts = pair_counts(ref.packed[name], mask.packed[name], shape, kept_ref, count(mask.packed[name]))
            for key in keys[name]:
                totals.setdefault(key + (i,), PairCounts()).add(counts)
    result = ReferenceResult(
        ref_label,
        ref_source,
        ref.method.get("name", ""),
        labels,
        sources,
        [m.method.get("name", "") for m in masks],
        names,
        notes=notes,
    )
    result.reference_meta = {"rank_by": ref.method.get("rank_by", "raw"), "steps": ref.method.get("steps")}
    result.layers = sorted_layers({str(g.layer) for g in groups.values() if g.layer is not None})
    result.projections = projection_order([groups[n].projection for n in names])
    order = (
        [("tensor", n) for n in names]
        + [("layer", x) for x in result.layers]
        + [("projection", p) for p in result.projections]
        + [("overall", OVERALL)]
    )
    for level, group in order:
        for i, label in enumerate(labels):
            row = {"level": level, "group": group, "mask": label, "method": result.methods[i]}
            if level == "tensor":
                g = groups[group]
                row |= {"layer": g.layer, "projection": g.projection}
            result.rows.append(row | _metrics(totals[(level, group, i)]) | {"spearman": None})
    return result


def add_rank_correlations(result: ReferenceResult, label: str, reference_scores: dict, criterion: dict) -> int:
    """Fill `spearman` of `label`'s rows from per-tensor scores; returns the tensors correlated."""
    groups = tensor_groups(result.tensors)
    keys = group_keys(groups)
    sums: dict[tuple, list[float]] = {}
    done = 0
    for name in result.tensors:
        if name not in reference_scores or name not in criterion:
            continue
        if tuple(reference_scores[name].shape) != tuple(criterion[name].shape):
            raise MaskMismatchError(
                f"scores of '{name}' have shape {list(reference_scores[name].shape)} in the run but "
                f"{list(criterion[name].shape)} in --model; pass the run of this mask's model"
            )
        rho = spearman(reference_scores[name], criterion[name])
        if rho is None:
            continue
        done += 1
        n = criterion[name].numel()
        for key in keys[name]:
            acc = sums.setdefault(key, [0.0, 0])
            acc[0] += rho * n
            acc[1] += n
    for row in result.rows:
        if row["mask"] == label and (row["level"], row["group"]) in sums:
            total, n = sums[(row["level"], row["group"])]
            row["spearman"] = finite(total / n)
    return done


def correlate_with_run(
    result: ReferenceResult,
    masks: list,
    run_dir: str,
    loaded=None,
    *,
    data: str | None = None,
    force: bool = False,
    progress=None,
) -> None:
    """Spearman of the run's latest checkpoint scores with each criterion mask's recomputed scores
    (`progress(done, total)` after each criterion).

    `masks` are the compared masks (paths or Masks, in `result.labels` order); `loaded` is the base
    model (mftlab.models.loading.LoadedModel) or None (then only the checkpoint is recorded, with a note).
    """
    ranking, step = run_scores(run_dir, result.reference_meta.get("rank_by", "raw"))
    result.scores = {"run": str(run_dir), "checkpoint_step": step}
    note = f"reference scores from checkpoint step {step} of '{run_dir}'"
    if result.reference_meta.get("steps") not in (None, step):
        note += f" (the reference mask is from step {result.reference_meta['steps']})"
    result.notes.append(note)
    if loaded is None:
        result.notes.append("no rank correlations: pass --model (and --data for wanda / snip) to recompute criteria")
        return
    for done, (label, mask) in enumerate(zip(result.labels, masks), 1):
        scores, why = mask_criterion_scores(
            load_with_source(mask)[0], label, result.tensors, loaded, data=data, force=force
        )
        if scores is None:
            result.notes.append(why)
        else:
            add_rank_correlations(result, label, ranking, scores)
        if progress is not None:
            progress(done, len(masks))

"""Mask dynamics: how a mask changes over the snapshots of a training run.

For an ordered list of masks (checkpoints of one run, or any sequence over the same tensors):
flips between consecutive snapshots, Hamming distance to the first and to the final mask, and
the masked fraction, per layer and overall. All counts are popcounts of XORs on the packed
bytes; at most three masks (first, final, previous) are held in memory at once.

A training run folder holds `checkpoints/step-XXXXXX/mask.safetensors` snapshots and, when
finished, the final `mask.safetensors`; `run_masks` finds them in step order.
"""

from __future__ import annotations

import glob
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np

from mftlab.analysis.groups import OVERALL, sorted_layers, tensor_groups
from mftlab.analysis.packed_counts import count
from mftlab.analysis.results import finite
from mftlab.errors import MaskMismatchError, MftlabError
from mftlab.files.results import header, write_result
from mftlab.mask.maskfile import Mask, load_mask

_STEP_RE = re.compile(r"(\d+)$")


# -- finding the snapshots of a run ------------------------------------------------------------
def _step_of(folder: str) -> int | None:
    m = _STEP_RE.search(os.path.basename(folder.rstrip(os.sep)))
    return int(m.group(1)) if m else None


def run_masks(run_dir: str | os.PathLike) -> tuple[list[str], list[int | None], list[str]]:
    """(paths, steps, labels) of a run's mask snapshots in step order, the final mask last.

    Snapshots: RUN_DIR/checkpoints/*/mask.safetensors, ordered by the number ending the folder
    name (step-000100 -> 100). The final RUN_DIR/mask.safetensors, when present, comes last with
    the step recorded in its metadata (or none).
    """
    run_dir = os.fspath(run_dir)
    if not os.path.isdir(run_dir):
        raise MftlabError(f"--run '{run_dir}' is not a folder; pass the --out folder of a training run")
    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), "checkpoints", "*", "mask.safetensors")):
        step = _step_of(os.path.dirname(path))
        if step is not None:
            found.append((step, path))
    found.sort()
    paths = [p for _, p in found]
    steps: list[int | None] = [s for s, _ in found]
    labels = [f"step {s}" for s in steps]
    final = os.path.join(run_dir, "mask.safetensors")
    if os.path.exists(final):
        paths.append(final)
        steps.append(None)  # filled from the metadata when loaded
        labels.append("final")
    if len(paths) < 2:
        raise MftlabError(
            f"--run '{run_dir}' has {len(paths)} mask snapshot(s); dynamics need at least 2 "
            "(checkpoints/step-*/mask.safetensors and/or mask.safetensors)"
        )
    return paths, steps, labels


def _metadata_step(mask: Mask) -> int | None:
    for key in ("step", "global_step", "steps"):
        value = mask.method.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# -- the result -------------------------------------------------------------------------------
@dataclass
class DynamicsResult:
    labels: list[str]
    steps: list[int | None]
    sources: list[str]
    layers: list[str]
    # group ("all" or a layer number as text) -> one value per snapshot (flips: per transition)
    numel: dict[str, int] = field(default_factory=dict)
    masked_fraction: dict[str, list] = field(default_factory=dict)
    flips: dict[str, list] = field(default_factory=dict)  # len(snapshots) - 1
    to_first: dict[str, list] = field(default_factory=dict)
    to_final: dict[str, list] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            **header("dynamics"),
            "labels": self.labels,
            "steps": self.steps,
            "sources": self.sources,
            "layers": self.layers,
            "notes": self.notes,
            "definitions": {
                "flips": "flips[g][i]: weights whose bit differs between snapshot i and i+1 (popcount of XOR)",
                "to_first": "Hamming distance of each snapshot to the first",
                "to_final": "... to the last",
                "groups": "'all' is every tensor; other keys are layer numbers",
            },
            "numel": self.numel,
            "masked_fraction": self.masked_fraction,
            "flips": self.flips,
            "to_first": self.to_first,
            "to_final": self.to_final,
        }

    def csv_rows(self) -> list[dict]:
        rows = []
        for group in [OVERALL] + self.layers:
            n = self.numel[group]
            for i, (label, step) in enumerate(zip(self.labels, self.steps)):
                rows.append(
                    {
                        "group": group,
                        "snapshot": i,
                        "label": label,
                        "step": step,
                        "masked_fraction": self.masked_fraction[group][i],
                        "flips_from_previous": self.flips[group][i - 1] if i else None,
                        "flip_fraction": finite(self.flips[group][i - 1] / n) if i else None,
                        "hamming_to_first": self.to_first[group][i],
                        "hamming_to_final": self.to_final[group][i],
                    }
                )
        return rows

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write dynamics.json and dynamics.csv into `folder` (made if needed); `mftlab plot` draws them."""
        return write_result(folder, "dynamics", self.to_dict(), rows=self.csv_rows())


def _xor_by_group(a: Mask, b: Mask, names, group_of) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in names:
        diff = count(np.bitwise_xor(a.packed[name], b.packed[name]))
        for g in (OVERALL, group_of[name]):
            if g is not None:
                out[g] = out.get(g, 0) + diff
    return out


def _check_same(reference: Mask, mask: Mask, label: str, first_label: str) -> None:
    if set(mask.packed) != set(reference.packed):
        diff = sorted(set(mask.packed) ^ set(reference.packed))[0]
        raise MaskMismatchError(
            f"snapshot '{label}' and '{first_label}' cover different tensors ('{diff}' is in one only); "
            "dynamics need snapshots of one run"
        )
    for name, shape in reference.shapes.items():
        if mask.shapes[name] != shape:
            raise MaskMismatchError(
                f"tensor '{name}' has shape {list(mask.shapes[name])} in '{label}' but {list(shape)} in '{first_label}'"
            )


def mask_dynamics(
    masks: list, steps: list[int | None] | None = None, labels: list[str] | None = None, progress=None
) -> DynamicsResult:
    """Flips and Hamming distances over an ordered list of masks (Mask objects or file paths).

    `steps` gives the training step of each snapshot (None where unknown); labels default to
    'step N' or the snapshot index. `progress(done, total)` is called per snapshot.
    """
    if len(masks) < 2:
        raise MftlabError(f"mask dynamics need at least 2 snapshots, got {len(masks)}")
    steps = list(steps) if steps is not None else [None] * len(masks)
    if len(steps) != len(masks):
        raise MftlabError(f"{len(steps)} steps for {len(masks)} masks; give one step per mask")

    def load(i):
        m = masks[i]
        return (m, "") if isinstance(m, Mask) else (load_mask(m), os.fspath(m))

    first, _ = load(0)
    final, _ = load(len(masks) - 1)
    _check_same(first, final, labels[-1] if labels else "the last snapshot", labels[0] if labels else "the first")
    names = list(first.packed)
    groups = tensor_groups(names)
    group_of = {n: (str(g.layer) if g.layer is not None else None) for n, g in groups.items()}
    layers = sorted_layers({g for g in group_of.values() if g is not None})
    keys = [OVERALL] + layers
    numel = dict.fromkeys(keys, 0)
    for n in names:
        size = math.prod(first.shapes[n]) if first.shapes[n] else 1
        for g in (OVERALL, group_of[n]):
            if g is not None:
                numel[g] += size
    result = DynamicsResult([], [], [], layers, numel)
    for series in (result.masked_fraction, result.to_first, result.to_final, result.flips):
        series.update({g: [] for g in keys})
    previous = None
    for i in range(len(masks)):
        mask = first if i == 0 else final if i == len(masks) - 1 else load(i)[0]
        source = "" if isinstance(masks[i], Mask) else os.fspath(masks[i])
        label = labels[i] if labels else None
        step = steps[i] if steps[i] is not None else _metadata_step(mask)
        label = label or (f"step {step}" if step is not None else f"snapshot {i}")
        _check_same(first, mask, label, result.labels[0] if result.labels else label)
        result.labels.append(label)
        result.steps.append(step)
        result.sources.append(source)
        kept: dict[str, int] = {}
        for n in names:
            for g in (OVERALL, group_of[n]):
                if g is not None:
                    kept[g] = kept.get(g, 0) + mask.kept(n)
        to_first = _xor_by_group(first, mask, names, group_of)
        to_final = _xor_by_group(final, mask, names, group_of)
        flips = _xor_by_group(previous, mask, names, group_of) if previous is not None else None
        for g in keys:
            result.masked_fraction[g].append(finite(1.0 - kept[g] / numel[g]))
            result.to_first[g].append(to_first[g])
            result.to_final[g].append(to_final[g])
            if flips is not None:
                result.flips[g].append(flips[g])
        previous = mask
        if progress is not None:
            progress(i + 1, len(masks))
    known = [s for s in result.steps if s is not None]
    if len(known) != len(result.steps) or any(b <= a for a, b in zip(known, known[1:])):
        result.notes.append("steps unknown or not increasing; figures use the snapshot index")
    return result

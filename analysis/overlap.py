"""Overlap between masks, computed on the packed bytes (bitwise AND/OR/XOR and popcount).

For every pair (a, b) and every tensor only one popcount is needed: kept-in-either
= popcount(a | b), so the weights masked by both are `numel - popcount(a | b)` and padding bits
(zero in both) can never leak in. Everything else follows from the counts:

    masked_a, masked_b   numel - popcount(a), numel - popcount(b)
    shared_masked        x = numel - popcount(a | b)
    union_masked         masked_a + masked_b - x
    Jaccard, Dice        x / union,  2x / (masked_a + masked_b)        (1.0 when both mask nothing)
    Hamming              popcount(a ^ b) = masked_a + masked_b - 2x
    expected             masked_a * masked_b / numel: the mean of x if the masks were independent
                         at their own ratios (hypergeometric); lift = x / expected

Groups (layer, projection, overall) add the per-tensor counts and expectations, i.e. the
independence baseline is stratified by tensor. The p-value is one-sided, P(X >= x): exact
hypergeometric for one tensor (scipy sf; below 1e-300 `log10_p` keeps the value, from a tight
geometric bound on the tail, while `p_value` reads 0.0), and a normal approximation of the sum of per-tensor
hypergeometrics for groups of several tensors. The z-score is (x - expected) / sd.

For N masks, a bit-sliced counter gives k-of-N consensus (weights masked by exactly k masks)
and what each mask masks alone. Memory: the packed masks plus a few packed temporaries.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np

from mftlab.analysis.groups import OVERALL, group_keys, projection_order, sorted_layers, tensor_groups
from mftlab.analysis.packed_counts import count, counter_add, counter_equal, counter_planes, masked_bits
from mftlab.analysis.results import finite
from mftlab.errors import MaskMismatchError
from mftlab.files.results import header, write_result
from mftlab.mask.maskfile import Mask, load_mask

_TINY = 1e-300  # below this, p-values are reported through log10_p
LEVELS = ("tensor", "layer", "projection", "overall")


# -- significance -----------------------------------------------------------------------------
def hypergeom_test(numel: int, masked_a: int, masked_b: int, shared: int) -> tuple[float, float, float]:
    """(expected, variance, log P(X >= shared)) for X ~ Hypergeom(numel, masked_a, masked_b)."""
    from scipy.stats import hypergeom

    expected = masked_a * masked_b / numel if numel else 0.0
    variance = _hypergeom_variance(numel, masked_a, masked_b)
    if numel == 0:
        return expected, variance, 0.0
    p = float(hypergeom.sf(shared - 1, numel, masked_a, masked_b))
    if p > _TINY:
        return expected, variance, math.log(p)
    # Below float range. scipy's logsf sums the whole tail (slow for millions of weights); the pmf
    # is log-concave, so past the mode the tail is bounded by a geometric series with the ratio r
    # of consecutive terms: pmf(x) <= P(X >= x) <= pmf(x) / (1 - r). Report the upper bound.
    log_pmf = float(hypergeom.logpmf(shared, numel, masked_a, masked_b))
    r = ((masked_a - shared) * (masked_b - shared)) / ((shared + 1) * (numel - masked_a - masked_b + shared + 1))
    return expected, variance, min(log_pmf - math.log1p(-r) if r < 1 else log_pmf, 0.0)


def _hypergeom_variance(numel: int, masked_a: int, masked_b: int) -> float:
    if numel <= 1:
        return 0.0
    p = masked_a / numel
    return masked_b * p * (1.0 - p) * (numel - masked_b) / (numel - 1)


def _normal_log_sf(z: float) -> float:
    from scipy.stats import norm

    return float(norm.logsf(z))


# -- counts -----------------------------------------------------------------------------------
@dataclass
class PairCounts:
    """Additive counts of one pair over one group of tensors."""

    numel: int = 0
    masked_a: int = 0
    masked_b: int = 0
    shared: int = 0
    expected: float = 0.0
    variance: float = 0.0
    log_p: float = 0.0  # exact, only meaningful while tensors == 1
    tensors: int = 0

    def add(self, other: "PairCounts") -> None:
        self.numel += other.numel
        self.masked_a += other.masked_a
        self.masked_b += other.masked_b
        self.shared += other.shared
        self.expected += other.expected
        self.variance += other.variance
        self.log_p = other.log_p
        self.tensors += other.tensors

    def metrics(self) -> dict:
        """Jaccard, Dice, Hamming, lift, z and p-value of these counts (JSON-safe)."""
        union = self.masked_a + self.masked_b - self.shared
        hamming = self.masked_a + self.masked_b - 2 * self.shared
        sd = math.sqrt(self.variance)
        z = (self.shared - self.expected) / sd if sd > 0 else 0.0
        if self.tensors == 1:
            log_p, method = self.log_p, "hypergeometric"
        else:
            log_p, method = (_normal_log_sf(z) if sd > 0 else 0.0), "normal approximation"
        return {
            "numel": self.numel,
            "masked_a": self.masked_a,
            "masked_b": self.masked_b,
            "shared_masked": self.shared,
            "union_masked": union,
            "jaccard": finite(self.shared / union) if union else 1.0,
            "dice": finite(2 * self.shared / (self.masked_a + self.masked_b)) if union else 1.0,
            "hamming": hamming,
            "hamming_fraction": finite(hamming / self.numel) if self.numel else 0.0,
            "expected_shared": finite(self.expected),
            "lift": finite(self.shared / self.expected) if self.expected > 0 else None,
            "z": finite(z),
            "p_value": finite(math.exp(log_p)),
            "log10_p": finite(log_p / math.log(10)),
            "p_method": method,
        }


def pair_counts(
    a: np.ndarray, b: np.ndarray, shape: tuple[int, ...], kept_a: int | None = None, kept_b: int | None = None
) -> PairCounts:
    """Counts of two packed keep-masks of one tensor (shape = logical shape; kept counts if known)."""
    numel = math.prod(shape) if shape else 1
    masked_a = numel - (count(a) if kept_a is None else kept_a)
    masked_b = numel - (count(b) if kept_b is None else kept_b)
    shared = numel - count(np.bitwise_or(a, b))
    expected, variance, log_p = hypergeom_test(numel, masked_a, masked_b, shared)
    return PairCounts(numel, masked_a, masked_b, shared, expected, variance, log_p, 1)


def consensus_counts(packed: list[np.ndarray], shape: tuple[int, ...]) -> tuple[list[int], list[int]]:
    """(exactly, only): weights masked by exactly k of the N masks (k = 0..N), and by mask i alone."""
    n = len(packed)
    planes = counter_planes(n, packed[0].shape)
    masked = [masked_bits(p, shape) for p in packed]
    for bits in masked:
        counter_add(planes, bits)
    exactly = [counter_equal(planes, k, shape) for k in range(n + 1)]
    # Alone = masked by i and kept by every other mask: prefix/suffix ANDs of the kept bits.
    prefix = [None] * (n + 1)
    suffix = [None] * (n + 1)
    for i in range(n):
        prefix[i + 1] = packed[i] if prefix[i] is None else prefix[i] & packed[i]
    for i in range(n - 1, -1, -1):
        suffix[i] = packed[i] if suffix[i + 1] is None else suffix[i + 1] & packed[i]
    only = []
    for i in range(n):
        others = [x for x in (prefix[i], suffix[i + 1]) if x is not None]
        kept_by_others = others[0] if len(others) == 1 else others[0] & others[1]
        only.append(count(masked[i] & kept_by_others))
    return exactly, only


# -- checking that masks can be compared -------------------------------------------------------
def shared_tensors(masks: list[Mask], labels: list[str], force: bool = False) -> tuple[list[str], list[str]]:
    """Tensor names all masks share (first mask's order) and notes on what was left out.

    Different tensor sets, shapes or bases raise MaskMismatchError naming the difference,
    unless `force` (then only the shared, same-shape tensors are compared and the notes say so).
    """
    first, notes = masks[0], []
    names = list(first.packed)
    for mask, label in zip(masks[1:], labels[1:]):
        extra = [n for n in mask.packed if n not in first.packed]
        missing = [n for n in first.packed if n not in mask.packed]
        if (extra or missing) and not force:
            which = (
                f"has '{extra[0]}' that '{labels[0]}' lacks"
                if extra
                else f"lacks '{missing[0]}' that '{labels[0]}' has"
            )
            raise MaskMismatchError(
                f"mask '{label}' {which} ({len(extra) + len(missing)} tensors differ); compare masks over the "
                "same tensors, or pass --force to compare only the shared ones"
            )
        names = [n for n in names if n in mask.packed]
        for n in list(names):
            if mask.shapes[n] != first.shapes[n]:
                if not force:
                    raise MaskMismatchError(
                        f"tensor '{n}' has shape {list(first.shapes[n])} in '{labels[0]}' but "
                        f"{list(mask.shapes[n])} in '{label}'; these masks are for different models "
                        "(pass --force to skip such tensors)"
                    )
                names.remove(n)
        _check_same_base(first, mask, labels[0], label, names, force=force, notes=notes)
    dropped = len(first.packed) - len(names)
    if dropped:
        notes.append(f"compared the {len(names)} tensors all masks share; {dropped} of '{labels[0]}' were left out")
    if not names:
        raise MaskMismatchError("the masks share no tensor of the same shape; there is nothing to compare")
    return names, notes


def _check_same_base(a: Mask, b: Mask, label_a: str, label_b: str, names: list[str], *, force: bool, notes: list[str]):
    fa, fb = a.base_model.get("fingerprint"), b.base_model.get("fingerprint")
    differing = [
        n for n in names if a.fingerprints.get(n) and b.fingerprints.get(n) and a.fingerprints[n] != b.fingerprints[n]
    ]
    if not differing and not (fa and fb and fa != fb):
        return
    what = f"tensor '{differing[0]}'" if differing else "base fingerprint"
    msg = (
        f"masks '{label_a}' and '{label_b}' were learned on different bases ({what} differs: "
        f"'{a.base_model.get('name_or_path', '?')}' vs '{b.base_model.get('name_or_path', '?')}')"
    )
    if not force:
        raise MaskMismatchError(msg + "; compare masks of the same base, or pass --force")
    notes.append(msg + "; compared anyway (--force)")


# -- the result -------------------------------------------------------------------------------
@dataclass
class OverlapResult:
    labels: list[str]
    sources: list[str]
    mask_ratios: list[float]
    tensors: list[str]
    notes: list[str] = field(default_factory=list)
    pairs: list[dict] = field(default_factory=list)  # one row per (level, group, a, b)
    consensus: list[dict] = field(default_factory=list)  # one row per (level, group)
    layers: list[str] = field(default_factory=list)
    projections: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            **header("overlap"),
            "labels": self.labels,
            "sources": self.sources,
            "mask_ratios": [finite(r) for r in self.mask_ratios],
            "tensors": self.tensors,
            "layers": self.layers,
            "projections": self.projections,
            "notes": self.notes,
            "definitions": {
                "masked": "bit 0 of the mask file; every count is of masked weights",
                "expected_shared": (
                    "sum over tensors of masked_a * masked_b / numel (independent masks at their own per-tensor ratios)"
                ),
                "lift": "shared_masked / expected_shared",
                "p_value": (
                    "one-sided P(shared >= observed): exact hypergeometric per tensor, normal approximation"
                    " for groups; log10_p keeps values below float range"
                ),
                "exactly": "exactly[k] = weights masked by exactly k of the masks",
                "only": "weights masked by this mask and kept by all others",
            },
            "pairs": self.pairs,
            "consensus": self.consensus,
        }

    def csv_rows(self) -> list[dict]:
        return self.pairs

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write overlap.json and overlap.csv into `folder` (made if needed); `mftlab plot` draws them."""
        return write_result(folder, "overlap", self.to_dict(), rows=self.csv_rows())

    def overall(self, a: str, b: str) -> dict:
        """The overall row of one pair (by label)."""
        return next(r for r in self.pairs if r["level"] == "overall" and r["a"] == a and r["b"] == b)


def load_with_source(mask: Mask | str | os.PathLike) -> tuple[Mask, str]:
    """A Mask (given, or loaded from a path) and where it came from (the path, or its base model's name)."""
    if isinstance(mask, Mask):
        return mask, mask.base_model.get("name_or_path", "")
    return load_mask(mask), os.fspath(mask)


def default_labels(sources: list[str]) -> list[str]:
    """File stems, or parent folders when the stems repeat (run1/mask.safetensors)."""
    stems = [os.path.splitext(os.path.basename(s))[0] or s for s in sources]
    if len(set(stems)) == len(stems):
        return stems
    parents = [os.path.basename(os.path.dirname(os.path.abspath(s))) for s in sources]
    named = [f"{p}/{s}" for p, s in zip(parents, stems)]
    return named if len(set(named)) == len(named) else [f"{i}:{s}" for i, s in enumerate(stems)]


def compare_masks(masks: list, labels: list[str] | None = None, force: bool = False, progress=None) -> OverlapResult:
    """Pairwise overlap and k-of-N consensus of `masks` (Mask objects or file paths).

    Works one tensor at a time on packed bytes. `progress(done, total)` is called per tensor.
    """
    loaded = [load_with_source(m) for m in masks]
    masks_, sources = [m for m, _ in loaded], [s for _, s in loaded]
    if len(masks_) < 2:
        raise MaskMismatchError(f"compare-masks needs at least 2 masks, got {len(masks_)}; pass two or more mask files")
    labels = list(labels) if labels else default_labels(sources)
    if len(labels) != len(masks_):
        raise MaskMismatchError(f"--labels has {len(labels)} names for {len(masks_)} masks; give one label per mask")
    if len(set(labels)) != len(labels):
        raise MaskMismatchError(f"--labels {','.join(labels)} repeats a name; give each mask its own label")
    names, notes = shared_tensors(masks_, labels, force)
    groups = tensor_groups(names)
    keys = group_keys(groups)
    pairs = list(combinations(range(len(masks_)), 2))
    pair_totals: dict[tuple, PairCounts] = {}
    cons_totals: dict[tuple, list] = {}
    for done, name in enumerate(names, 1):
        shape = masks_[0].shapes[name]
        packed = [m.packed[name] for m in masks_]
        kept = [count(p) for p in packed]
        for i, j in pairs:
            counts = pair_counts(packed[i], packed[j], shape, kept[i], kept[j])
            for key in keys[name]:
                pair_totals.setdefault(key + (i, j), PairCounts()).add(counts)
        exactly, only = consensus_counts(packed, shape)
        numel = math.prod(shape) if shape else 1
        for key in keys[name]:
            tot = cons_totals.setdefault(key, [0, [0] * len(exactly), [0] * len(only)])
            tot[0] += numel
            tot[1] = [x + y for x, y in zip(tot[1], exactly)]
            tot[2] = [x + y for x, y in zip(tot[2], only)]
        if progress is not None:
            progress(done, len(names))
    order = _key_order(names, groups)
    result = OverlapResult(labels, sources, [_ratio(m, names) for m in masks_], names, notes)
    result.layers = sorted_layers({str(g.layer) for g in groups.values() if g.layer is not None})
    result.projections = projection_order([groups[n].projection for n in names])
    for level, group in order:
        for i, j in pairs:
            row = {"level": level, "group": group, "a": labels[i], "b": labels[j]}
            result.pairs.append(row | pair_totals[(level, group, i, j)].metrics())
        numel, exactly, only = cons_totals[(level, group)]
        result.consensus.append(
            {"level": level, "group": group, "numel": numel, "exactly": exactly, "only": dict(zip(labels, only))}
        )
    return result


def _ratio(mask: Mask, names: list[str]) -> float:
    total = sum(mask.numel(n) for n in names)
    return 1.0 - sum(mask.kept(n) for n in names) / max(total, 1)


def _key_order(names: list[str], groups) -> list[tuple[str, str]]:
    layers = sorted_layers({str(g.layer) for g in groups.values() if g.layer is not None})
    projections = projection_order([groups[n].projection for n in names])
    return (
        [("tensor", n) for n in names]
        + [("layer", x) for x in layers]
        + [("projection", p) for p in projections]
        + [("overall", OVERALL)]
    )

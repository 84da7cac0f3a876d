"""Turning scores into exact binary masks (CONTRIBUTING.md, words: "selection").

Conventions, shared by MFT training and the baseline masks:

- K, the number of masked weights in a comparison group of n, is `round_half_up(mask_ratio * n)`,
  clamped to [0, n - 1] so that no group is ever masked out entirely.
- The K *lowest* ranking values are masked (bit 0); everything else is kept.
- Ties at the cut-off are broken by flat index: among equal values the lower index is masked
  first. So masks are exact, deterministic and identical on every run and device.
- Selection uses `kthvalue` (a partial selection), never a full sort.

Granularities (`GRANULARITY_RULES`, a name-to-function table): `tensor` (one group per tensor,
the paper's "local" ratio mode), `row` (one group per output unit), `global` (one group over all
tensors, found without concatenating them). A new granularity is one function with the signature
`(values, mask_ratio, out_axes) -> keep-masks` and one entry in the table; `--granularity`
offers the table's keys. `keep_threshold` (kept where value > T, with a per-tensor floor) serves
the `threshold` selection rule (`mftlab.mft.selection_rules.SELECTION_RULES`).
"""

from __future__ import annotations

import math

import torch

from mftlab.errors import ConfigError
from mftlab.options_meta import choice_error


def num_masked(n: int, mask_ratio: float) -> int:
    """K for a group of n weights: round-half-up of mask_ratio * n, at most n - 1."""
    if n <= 1:
        return 0
    return min(int(math.floor(mask_ratio * n + 0.5)), n - 1)


def check_ratio(mask_ratio: float) -> None:
    if not (isinstance(mask_ratio, (int, float)) and 0.0 < float(mask_ratio) < 1.0):
        raise ConfigError.for_option(
            "mask_ratio", mask_ratio, "is outside (0, 1); the paper uses 0.1 (10% of weights masked)"
        )


def _mask_lowest_flat(values: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean 'masked' for the k lowest entries of 1-D `values` (ties: lower index first)."""
    masked = torch.zeros(values.shape, dtype=torch.bool, device=values.device)
    if k <= 0:
        return masked
    cut = torch.kthvalue(values, k).values
    torch.lt(values, cut, out=masked)
    need = k - int(masked.sum())
    if need > 0:
        ties = torch.nonzero(values == cut).flatten()  # only the ties, usually few
        masked[ties[:need]] = True
    return masked


def keep_tensor(values: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """Keep-mask (True = kept) masking the K lowest values of the whole tensor."""
    flat = values.detach().reshape(-1).float()
    return ~_mask_lowest_flat(flat, num_masked(flat.numel(), mask_ratio)).reshape(values.shape)


def keep_rows(values: torch.Tensor, mask_ratio: float, out_axis: int = 0) -> torch.Tensor:
    """Keep-mask with the same K in every output unit (row of a Linear, column of a Conv1D)."""
    if values.dim() == 1:
        return keep_tensor(values, mask_ratio)
    v = values.detach().float()
    v = v if out_axis == 0 else v.transpose(0, 1)
    rows = v.reshape(v.shape[0], -1)  # (R, C): one comparison group per row
    k = num_masked(rows.shape[1], mask_ratio)
    masked = torch.zeros(rows.shape, dtype=torch.bool, device=rows.device)
    if k > 0:
        cut = torch.kthvalue(rows, k, dim=1, keepdim=True).values  # (R, 1)
        torch.lt(rows, cut, out=masked)
        need = k - masked.sum(dim=1, keepdim=True)  # (R, 1)
        ties = rows == cut
        if bool((ties.sum(dim=1, keepdim=True) != need).any()):
            # Only when some row has surplus ties: take the first `need` of them by index.
            masked |= ties & (ties.cumsum(dim=1) <= need)
        else:
            masked |= ties
    masked = masked.reshape(v.shape)
    return ~(masked if out_axis == 0 else masked.transpose(0, 1))


def _sortable_int(values: torch.Tensor) -> torch.Tensor:
    """Map float32 to int64 keys with the same order (for an exact value search)."""
    bits = values.detach().float().contiguous().view(torch.int32).to(torch.int64)
    return torch.where(bits < 0, -(bits & 0x7FFFFFFF) - 1, bits)


def _count_le(groups: list[torch.Tensor], key: int) -> int:
    return sum(int((_sortable_int(g) <= key).sum()) for g in groups)


def mask_lowest(flats: list[torch.Tensor], k: int) -> list[torch.Tensor]:
    """Boolean 'masked' for the k lowest entries over 1-D tensors taken together.

    Ties are broken by tensor order, then flat index. One tensor uses `kthvalue`; several use a
    bisection over the float32 bit patterns (32 counting passes), so no concatenated copy of
    all values is ever made.
    """
    if len(flats) == 1:
        return [_mask_lowest_flat(flats[0].float(), k)]
    if k <= 0:
        return [torch.zeros(f.shape, dtype=torch.bool, device=f.device) for f in flats]
    lo = min(int(_sortable_int(f).min()) for f in flats)
    hi = max(int(_sortable_int(f).max()) for f in flats)
    while lo < hi:  # smallest key with count(<= key) >= k
        mid = (lo + hi) // 2
        if _count_le(flats, mid) >= k:
            hi = mid
        else:
            lo = mid + 1
    out, remaining_ties = [], k - sum(int((_sortable_int(f) < lo).sum()) for f in flats)
    for flat in flats:
        key = _sortable_int(flat)
        masked = key < lo
        if remaining_ties > 0:
            ties = torch.nonzero(key == lo).flatten()[:remaining_ties]
            masked[ties] = True
            remaining_ties -= ties.numel()
        out.append(masked)
    return out


def keep_global(values: dict[str, torch.Tensor], mask_ratio: float) -> dict[str, torch.Tensor]:
    """Keep-masks masking the K lowest values over all tensors together (see `mask_lowest`)."""
    names = list(values)
    ranked = [values[n] for n in names]  # read once: `values` may compute each tensor when read
    flats = [v.detach().reshape(-1) for v in ranked]
    k = num_masked(sum(f.numel() for f in flats), mask_ratio)
    return {n: ~m.reshape(v.shape) for n, v, m in zip(names, ranked, mask_lowest(flats, k))}


def keep_threshold(values: torch.Tensor, threshold: float, min_keep_ratio: float = 0.01) -> torch.Tensor:
    """Keep where value > threshold; at least ceil(min_keep_ratio * n) (>= 1) weights stay kept."""
    v = values.detach()
    keep = v > threshold
    floor = max(1, math.ceil(min_keep_ratio * v.numel()))
    if int(keep.sum()) < floor:
        keep = keep_tensor(v, 1.0 - floor / v.numel()) if floor < v.numel() else torch.ones_like(keep)
    return keep


def keep_per_tensor(
    values: dict[str, torch.Tensor], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `tensor`: each tensor is one comparison group."""
    return {n: keep_tensor(v, mask_ratio) for n, v in values.items()}


def keep_per_row(
    values: dict[str, torch.Tensor], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `row`: each output unit (axis `out_axes[name]`, default 0) is one comparison group."""
    axes = out_axes or {}
    return {n: keep_rows(v, mask_ratio, axes.get(n, 0)) for n, v in values.items()}


def keep_all_together(
    values: dict[str, torch.Tensor], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `global`: all tensors form one comparison group."""
    return keep_global(values, mask_ratio)


# Name -> rule; a new granularity is one function above and one entry here.
GRANULARITY_RULES = {"tensor": keep_per_tensor, "row": keep_per_row, "global": keep_all_together}
GRANULARITIES = tuple(GRANULARITY_RULES)


def select_keep(
    values: dict[str, torch.Tensor],
    mask_ratio: float,
    granularity: str = "tensor",
    out_axes: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks for every tensor at one granularity (a key of `GRANULARITY_RULES`)."""
    check_ratio(mask_ratio)
    rule = GRANULARITY_RULES.get(granularity)
    if rule is None:
        raise choice_error("granularity", granularity, GRANULARITIES)
    return rule(values, mask_ratio, out_axes)

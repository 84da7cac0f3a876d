"""Exact mask selection over scores sharded by rows across processes (FSDP2), no full gather.

Each process holds, per scored tensor, a contiguous block of rows (dim 0) of the scores:
`ShardedValues(local, shape)`, blocks in rank order. The keep-masks come out bit-identical to
`mftlab.mft.selection` on the whole tensors:

- `tensor` / `global` top-k: the K-th lowest value is found by a bisection over the float32 bit
  patterns (as `mftlab.mft.selection.mask_lowest`); each iteration counts `<= mid` locally for every
  comparison group and sums the counts of all groups in ONE all_reduce of a vector. Ties at the
  cut-off are given out in (tensor order, global flat index) order, from per-process tie counts.
  A group of one tensor compares as floats (-0.0 equals +0.0), like `keep_tensor`'s kthvalue.
- `row` (Linear layout, rows whole on one process): purely local.
- `threshold`: local, with the per-tensor floor settled by one all_reduce of kept counts.

`gather_keep` then rebuilds the replicated full keep-masks from everyone's local parts, sent as
packed bits (one all_gather of a byte vector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mftlab.errors import ConfigError
from mftlab.mft.selection import check_ratio, keep_rows, num_masked


@dataclass
class ShardedValues:
    """This process's block of rows of a tensor of `shape`; the blocks follow process rank order."""

    local: torch.Tensor
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _all_reduce(t: torch.Tensor, op=None) -> torch.Tensor:
    if _world() > 1:
        dist.all_reduce(t, op=op or dist.ReduceOp.SUM)
    return t


def _all_gather(t: torch.Tensor) -> torch.Tensor:
    """(world, *t.shape): every process's `t` (same shape everywhere)."""
    if _world() == 1:
        return t.unsqueeze(0)
    parts = [torch.empty_like(t) for _ in range(_world())]
    dist.all_gather(parts, t)
    return torch.stack(parts)


def _keys(values: torch.Tensor, as_floats: bool) -> torch.Tensor:
    """int32 keys with the order of the float32 values (the order of mftlab.mft.selection._sortable_int)."""
    v = values.detach().float().reshape(-1)
    if as_floats:
        v = v + 0.0  # -0.0 -> +0.0: kthvalue's comparisons treat them as equal
    bits = v.contiguous().view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # negative floats: flip the magnitude order


_BIG = 1 << 40  # beyond every key (the search runs in int64)


def mask_lowest_groups(groups: list[list[ShardedValues]], ks: list[int]) -> list[list[torch.Tensor]]:
    """Local boolean 'masked' for the ks[g] lowest values of each group g over all processes.

    Ties: tensor order within the group, then global flat index. All processes must call this
    with the same groups (same tensors, same order) and ks.
    """
    keys = [[_keys(sv.local, as_floats=len(group) == 1) for sv in group] for group in groups]
    dev = keys[0][0].device if keys and keys[0] else torch.device("cpu")
    n = len(groups)
    k = torch.tensor(ks, dtype=torch.int64, device=dev)
    # lo = min key, hi = max key per group, in one MIN reduction of [min, -max].
    ext = torch.full((2 * n,), _BIG, dtype=torch.int64, device=dev)
    for g, ks_g in enumerate(keys):
        for key in ks_g:
            if key.numel():
                ext[g] = torch.minimum(ext[g], key.min().long())
                ext[n + g] = torch.minimum(ext[n + g], -key.max().long())
    _all_reduce(ext, dist.ReduceOp.MIN)
    lo, hi = ext[:n].clone(), -ext[n:]
    hi = torch.where(k <= 0, lo, hi)  # nothing to mask: no search
    while bool((lo < hi).any()):  # smallest key with count(<= key) >= k, for every group at once
        mid = torch.div(lo + hi, 2, rounding_mode="floor")
        counts = torch.zeros(n, dtype=torch.int64, device=dev)
        for g, ks_g in enumerate(keys):
            for key in ks_g:
                counts[g] += (key <= mid[g]).sum()
        _all_reduce(counts)
        enough = counts >= k
        hi = torch.where(enough, mid, hi)
        lo = torch.where(enough, lo, mid + 1)
    cut = lo
    # Per-process counts below the cut and at the cut, for every tensor: one all_gather.
    flat = [(g, i) for g, ks_g in enumerate(keys) for i in range(len(ks_g))]
    local = torch.zeros(2, len(flat), dtype=torch.int64, device=dev)
    for j, (g, i) in enumerate(flat):
        local[0, j] = (keys[g][i] < cut[g]).sum()
        local[1, j] = (keys[g][i] == cut[g]).sum()
    every = _all_gather(local).cpu()  # (world, 2, tensors)
    rank = dist.get_rank() if _world() > 1 else 0
    out: list[list[torch.Tensor]] = [[] for _ in groups]
    j = 0
    for g, ks_g in enumerate(keys):
        if ks[g] <= 0:
            out[g] = [
                torch.zeros(key.shape, dtype=torch.bool, device=key.device).reshape(sv.local.shape)
                for key, sv in zip(ks_g, groups[g])
            ]
            j += len(ks_g)
            continue
        first = j
        need = ks[g] - int(every[:, 0, first : first + len(ks_g)].sum())
        for i, key in enumerate(ks_g):
            before = int(every[:, 1, first:j].sum()) + int(every[:rank, 1, j].sum())
            mine = max(0, min(need - before, int(every[rank, 1, j])))
            masked = key < cut[g]
            if mine > 0:
                masked[torch.nonzero(key == cut[g]).flatten()[:mine]] = True
            out[g].append(masked.reshape(groups[g][i].local.shape))
            j += 1
    return out


def _sharded_rows(
    values: dict[str, ShardedValues], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `row`: rows are whole on one process; a 1-D tensor is one group (as keep_rows)."""
    names = list(values)
    flat = [n for n in names if len(values[n].shape) == 1]
    out = _sharded_tensor({n: values[n] for n in flat}, mask_ratio) if flat else {}
    for n in names:
        if n in out:
            continue
        if (out_axes or {}).get(n, 0) != 0:
            raise ConfigError(
                f"--granularity row with --sharding fsdp needs [out, in] weights; '{n}' is a "
                "Conv1D ([in, out]); use --granularity tensor or global"
            )
        local = values[n].local
        out[n] = (
            keep_rows(local, mask_ratio)
            if local.numel()
            else torch.ones(local.shape, dtype=torch.bool, device=local.device)
        )
    return {n: out[n] for n in names}


def _sharded_tensor(
    values: dict[str, ShardedValues], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `tensor`: each tensor is one comparison group."""
    names = list(values)
    groups = [[values[n]] for n in names]
    ks = [num_masked(values[n].numel, mask_ratio) for n in names]
    return {n: ~m[0] for n, m in zip(names, mask_lowest_groups(groups, ks))}


def _sharded_global(
    values: dict[str, ShardedValues], mask_ratio: float, out_axes: dict[str, int] | None = None
) -> dict[str, torch.Tensor]:
    """Granularity `global`: all tensors form one comparison group."""
    names = list(values)
    k = num_masked(sum(values[n].numel for n in names), mask_ratio)
    masked = mask_lowest_groups([[values[n] for n in names]], [k])[0]
    return {n: ~m for n, m in zip(names, masked)}


# The sharded counterparts of `mftlab.mft.selection.GRANULARITY_RULES` (same keys).
SHARDED_GRANULARITY_RULES = {"tensor": _sharded_tensor, "row": _sharded_rows, "global": _sharded_global}


def sharded_keep(
    values: dict[str, ShardedValues],
    mask_ratio: float,
    granularity: str = "tensor",
    out_axes: dict[str, int] | None = None,
) -> dict[str, torch.Tensor]:
    """Local keep-masks (True = kept), equal to `mftlab.mft.selection.select_keep` on the full tensors."""
    check_ratio(mask_ratio)
    rule = SHARDED_GRANULARITY_RULES.get(granularity)
    if rule is None:
        known = ", ".join(SHARDED_GRANULARITY_RULES)
        raise ConfigError(
            f"--granularity '{granularity}' is unknown or not available with --sharding fsdp; choose one of {known}"
        )
    return rule(values, mask_ratio, out_axes)


def sharded_threshold(
    values: dict[str, ShardedValues], threshold: float, min_keep_ratio: float = 0.01
) -> dict[str, torch.Tensor]:
    """Local keep-masks equal to `mftlab.mft.selection.keep_threshold` on each full tensor."""
    names = list(values)
    keep = {n: values[n].local.detach() > threshold for n in names}
    dev = next(iter(keep.values())).device if keep else torch.device("cpu")
    kept = _all_reduce(torch.tensor([int(keep[n].sum()) for n in names], dtype=torch.int64, device=dev))
    short = []
    for i, n in enumerate(names):
        total = values[n].numel
        floor = max(1, math.ceil(min_keep_ratio * total))
        if int(kept[i]) < floor:
            if floor < total:
                short.append((n, num_masked(total, 1.0 - floor / total)))
            else:
                keep[n] = torch.ones_like(keep[n])
    if short:
        masked = mask_lowest_groups([[values[n]] for n, _ in short], [k for _, k in short])
        for (n, _), m in zip(short, masked):
            keep[n] = ~m[0]
    return keep


# -- replicating the keep-masks ---------------------------------------------------------------
def _pack(bits: torch.Tensor) -> torch.Tensor:
    """1-D bool (length a multiple of 8) -> uint8, least-significant bit first."""
    weights = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8, device=bits.device)
    return (bits.reshape(-1, 8).to(torch.uint8) * weights).sum(dim=1, dtype=torch.uint8)


def _unpack(packed: torch.Tensor, count: int) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(1) >> shifts) & 1).reshape(-1)[:count].bool()


def gather_keep(
    local: dict[str, torch.Tensor], values: dict[str, ShardedValues], rows: dict[str, list[int]]
) -> dict[str, torch.Tensor]:
    """Full keep-masks on every process from the local ones (`rows[name]`: row count of each process)."""
    names = list(local)
    row_numel = {n: (math.prod(values[n].shape[1:]) if len(values[n].shape) > 1 else 1) for n in names}
    slot = {n: (max(rows[n]) * row_numel[n] + 7) // 8 * 8 for n in names}  # bits per process per tensor
    dev = next(iter(local.values())).device
    bits = torch.zeros(sum(slot.values()), dtype=torch.bool, device=dev)
    at = 0
    for n in names:
        flat = local[n].reshape(-1)
        bits[at : at + flat.numel()] = flat
        at += slot[n]
    every = _all_gather(_pack(bits))  # (world, bytes)
    full = {}
    for n in names:
        full[n] = torch.empty(values[n].numel, dtype=torch.bool, device=dev)
    at = 0
    for n in names:
        pos = 0
        for r, count in enumerate(rows[n]):
            numel = count * row_numel[n]
            chunk = every[r, at // 8 : (at + slot[n]) // 8]
            full[n][pos : pos + numel] = _unpack(chunk, numel)
            pos += numel
        at += slot[n]
    return {n: full[n].reshape(values[n].shape) for n in names}


def row_counts(values: dict[str, ShardedValues]) -> dict[str, list[int]]:
    """Rows held by each process, per tensor (one all_gather)."""
    names = list(values)
    dev = values[names[0]].local.device if names else torch.device("cpu")
    mine = torch.tensor(
        [values[n].local.shape[0] if values[n].local.dim() else 1 for n in names], dtype=torch.int64, device=dev
    )
    every = _all_gather(mine).cpu()
    return {n: [int(x) for x in every[:, i]] for i, n in enumerate(names)}

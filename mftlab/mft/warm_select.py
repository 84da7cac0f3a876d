"""Exact top-k selection, warm-started from the previous optimizer step (for training).

Between two optimizer steps the scores move a little, so the new cut-off (the K-th lowest
score) lies near the old one. `WarmSelector` keeps, per comparison group, the last cut-off c
and a band half-width e, counts the scores below c - e, gathers only the few scores inside
[c - e, c + e] and selects the K-th lowest among those. That is exact whenever the band holds
the K-th value (checked every time; otherwise the band widens, and after a few tries the full
`kthvalue` runs). Ties at the cut-off are broken by index exactly as in `mftlab.mft.selection`
(lower flat index masked first; for the global group, tensor order then flat index), so the
result is bit-identical to `keep_tensor` / `keep_global`; only the cost changes.

Cost per tensor: a handful of elementwise passes instead of a selection over every score.
The global group never concatenates scores: only the band (about 1% of them) is gathered.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mftlab.mft.selection import mask_lowest, num_masked

_BAND_LOW, _BAND_HIGH = 0.002, 0.02  # target band size, as a fraction of the group
_TRIES = 4


class WarmSelector:
    """Per-group cut-off memory for exact top-k (granularity `tensor` or `global`)."""

    def __init__(self):
        self.cut: dict[str, float] = {}
        self.eps: dict[str, float] = {}

    # -- warm path: only the band around the previous cut-off is selected over -----------------
    def _warm(self, key: str, flats: list[torch.Tensor], k: int, n: int) -> list[torch.Tensor] | None:
        c, eps = self.cut[key], self.eps[key]
        for _ in range(_TRIES):
            lo, hi = c - eps, c + eps
            lows = [f < lo for f in flats]  # surely masked
            below = sum(int(torch.count_nonzero(low)) for low in lows)
            if below < k:
                idx = [torch.nonzero((f <= hi) ^ low).flatten() for f, low in zip(flats, lows)]  # in [lo, hi]
                size = sum(i.numel() for i in idx)
                if below + size >= k:
                    vals = [f[i] for f, i in zip(flats, idx)]
                    cut = torch.kthvalue(torch.cat(vals), k - below).values
                    if size > _BAND_HIGH * n:
                        eps /= 2
                    elif size < _BAND_LOW * n:
                        eps *= 2
                    self.cut[key], self.eps[key] = float(cut), eps
                    keeps = [torch.logical_not(low, out=low) for low in lows]  # reuse the buffers
                    need = k - below - sum(int(torch.count_nonzero(v < cut)) for v in vals)
                    for keep, i, v in zip(keeps, idx, vals):
                        keep[i[v < cut]] = False
                        ties = i[v == cut][: max(need, 0)]  # ties: lowest (tensor, index) first
                        keep[ties] = False
                        need -= ties.numel()
                    return keeps
            eps *= 4
        return None

    # -- cold path: one full selection ------------------------------------------------------------
    def _cold(self, key: str, flats: list[torch.Tensor], k: int, n: int) -> list[torch.Tensor]:
        masked = mask_lowest(flats, k)  # the exact selection of mftlab.mft.selection
        cut = max(f[m].max() for f, m in zip(flats, masked) if bool(m.any()))  # the K-th lowest value
        spread = float(torch.std(flats[0])) if flats[0].numel() > 1 else 1.0
        self.cut[key], self.eps[key] = float(cut), max(spread * 0.01, 1e-12)
        return [~m for m in masked]

    def _keep(self, key: str, flats: list[torch.Tensor], k: int) -> list[torch.Tensor]:
        if k == 0:
            return [torch.ones(f.shape, dtype=torch.bool, device=f.device) for f in flats]
        n = sum(f.numel() for f in flats)
        keeps = self._warm(key, flats, k, n) if key in self.cut else None
        return keeps if keeps is not None else self._cold(key, flats, k, n)

    # -- public ----------------------------------------------------------------------------------
    def keep_tensor(self, name: str, values: torch.Tensor, mask_ratio: float) -> torch.Tensor:
        """Same result as `mftlab.mft.selection.keep_tensor(values, mask_ratio)`."""
        flat = values.detach().reshape(-1).float()
        return self._keep(name, [flat], num_masked(flat.numel(), mask_ratio))[0].reshape(values.shape)

    def keep_each_tensor(self, values: Mapping[str, torch.Tensor], mask_ratio: float) -> dict[str, torch.Tensor]:
        """Same result as granularity `tensor` (`mftlab.mft.selection.keep_per_tensor`), one tensor at a time."""
        return {n: self.keep_tensor(n, v, mask_ratio) for n, v in values.items()}

    def rule(self, granularity: str):
        """This selector's faster `(values, mask_ratio) -> keep-masks` for a granularity, or None (use the table)."""
        return {"tensor": self.keep_each_tensor, "global": self.keep_global_group}.get(granularity)

    def keep_global_group(self, values: Mapping[str, torch.Tensor], mask_ratio: float) -> dict[str, torch.Tensor]:
        """Same result as `mftlab.mft.selection.keep_global(values, mask_ratio)` (the global group)."""
        names = list(values)
        ranked = [values[n] for n in names]  # read once: a lazy ranking view recomputes |scores| per read
        flats = [v.detach().reshape(-1).float() for v in ranked]
        k = num_masked(sum(f.numel() for f in flats), mask_ratio)
        keeps = self._keep("\0global", flats, k)
        return {n: keep.reshape(v.shape) for n, v, keep in zip(names, ranked, keeps)}

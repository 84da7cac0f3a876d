"""Magnitudes of masked versus kept weights: quantiles per tensor and shared log-spaced histograms.

Used for |w| (the base the mask was learned on) and for |w_finetuned - w_pretrained|. Exact
quantiles use numpy (torch.quantile refuses tensors over 2^24 elements); histogram bins are
shared by all tensors so their counts add up across layers and projections.
"""

from __future__ import annotations

import numpy as np

from mftlab.analysis.results import finite

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
BINS = 60
_LOW_TAIL = 1e-3  # the lowest bin edge is the smallest per-tensor 0.1% quantile


def log_bins(arrays, bins: int = BINS) -> np.ndarray:
    """Shared log10 bin edges covering every tensor's values above its 0.1% quantile."""
    lo, hi = np.inf, -np.inf
    for values in arrays:
        v = values[values > 0]
        if v.size == 0:
            continue
        k = int(_LOW_TAIL * (v.size - 1))
        lo = min(lo, float(np.partition(v, k)[k]))
        hi = max(hi, float(v.max()))
    if not np.isfinite(lo):
        lo, hi = 1e-8, 1.0
    lo, hi = np.log10(lo), np.log10(hi)
    if hi - lo < 1e-6:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(np.floor(lo * 10) / 10, np.ceil(hi * 10) / 10, bins + 1)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of `values` in log10 bins; values outside the range go to the end bins (zeros to the first)."""
    with np.errstate(divide="ignore"):
        logs = np.log10(values)
    logs = np.clip(logs, edges[0], edges[-1])
    counts, _ = np.histogram(logs, bins=edges)
    return counts.astype(np.int64)


def quantiles(values: np.ndarray) -> dict:
    """Quantiles and mean of a 1-D array (empty -> Nones)."""
    if values.size == 0:
        return {f"p{round(q * 100)}": None for q in QUANTILES} | {"mean": None}
    qs = np.quantile(values, QUANTILES)
    return {f"p{round(q * 100)}": finite(v, 6) for q, v in zip(QUANTILES, qs)} | {
        "mean": finite(values.mean(dtype=np.float64), 6)
    }


def split_stats(values: np.ndarray, keep: np.ndarray) -> dict:
    """Quantiles of `values` where masked (keep False) and where kept; flat inputs of equal size."""
    return {"masked": quantiles(values[~keep]), "kept": quantiles(values[keep])}


def histogram_quantile(counts: np.ndarray, edges: np.ndarray, q: float) -> float | None:
    """Approximate quantile of the values behind a log10 histogram (linear inside a bin)."""
    total = counts.sum()
    if total == 0:
        return None
    cum = np.concatenate([[0], np.cumsum(counts)]) / total
    return finite(10 ** float(np.interp(q, cum, edges)), 6)

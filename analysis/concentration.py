"""How concentrated masked weights are: Gini coefficient, Lorenz curve and quantiles.

Inputs are per-unit masked fractions (one value per output row or input column), so units of
different widths (q rows versus down rows) are comparable. Gini is 0 when every unit has the
same masked fraction and approaches 1 when all masked weights sit in one unit.
"""

from __future__ import annotations

import numpy as np

from mftlab.analysis.results import finite

QUANTILES = (0.5, 0.9, 0.99)
LORENZ_POINTS = 101


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 for an empty or all-zero input)."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return 0.0
    ranks = np.arange(1, n + 1, dtype=np.float64)
    return float((2.0 * np.dot(ranks, x)) / (n * total) - (n + 1.0) / n)


def lorenz(values: np.ndarray, points: int = LORENZ_POINTS) -> list[float]:
    """Share of all masked weight held by the lowest p of units, at p = 0, 1/(points-1), ..., 1."""
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if x.size == 0 or x.sum() <= 0:
        return [finite(p) for p in np.linspace(0.0, 1.0, points)]
    cum = np.concatenate([[0.0], np.cumsum(x) / x.sum()])  # (n + 1,)
    grid = np.linspace(0.0, 1.0, points) * x.size
    return [finite(v, 6) for v in np.interp(grid, np.arange(x.size + 1), cum)]


def summarize_units(fractions: np.ndarray) -> dict:
    """max, quantiles, mean and Gini of per-unit masked fractions, plus how many units are untouched."""
    x = np.asarray(fractions, dtype=np.float64).ravel()
    if x.size == 0:
        return {"units": 0}
    out = {"units": int(x.size), "mean": finite(x.mean()), "max": finite(x.max())}
    for q, v in zip(QUANTILES, np.quantile(x, QUANTILES)):
        out[f"p{round(q * 100)}"] = finite(v)
    out["gini"] = finite(gini(x))
    out["untouched"] = int((x == 0).sum())  # units with no masked weight
    return out

"""Pieces shared by the heatmap figures (overlap, criteria): boxed cell labels and log colour-bar ticks."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np


def label_cells(
    ax, grid: np.ndarray, text: Callable[[int, int, float], str], *, fontsize: float, pad: float, alpha: float
) -> None:
    """Write `text(row, col, value)` in a white box on every finite cell of an imshow'd `grid`."""
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(
                j,
                i,
                text(i, j, v),
                ha="center",
                va="center",
                fontsize=fontsize,
                bbox={"boxstyle": f"round,pad={pad}", "fc": "white", "ec": "none", "alpha": alpha},
            )


def set_log_ticks(bar, norm, candidates: Iterable[float]) -> None:
    """Tick a log colour bar at the `candidates` inside the norm's range, labelled plainly (no minor ticks)."""
    ticks = [t for t in candidates if norm.vmin <= t <= norm.vmax]
    bar.set_ticks(ticks, labels=[f"{t:g}" for t in ticks])
    bar.ax.minorticks_off()

"""The one figure style, and the writers every figure goes through.

Static figures: matplotlib, saved as PNG (150 dpi) and PDF. Interactive figures: plotly,
saved as one self-contained HTML file with plotly.js inlined (opens offline, no CDN).
All writes are atomic.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # figures never need a display

import matplotlib.pyplot as plt  # noqa: E402

from mftlab.files.atomic import atomic_path  # noqa: E402

# Colour-blind-safe palette (Okabe-Ito) in the order methods usually appear.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
# Curves of several runs in one axes take PALETTE and LINE_STYLES by position; horizontal
# reference lines take REFERENCE_COLORS by position (black first, then colours the curves rarely use).
LINE_STYLES = ["-", "--", "-", ":", "-.", "--", ":", "-"]
REFERENCE_COLORS = [PALETTE[7], PALETTE[4], PALETTE[5], PALETTE[6], PALETTE[3], PALETTE[1]]
SEQUENTIAL_CMAP = "viridis"
DIVERGING_CMAP = "RdBu_r"

RC = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 5.0, height: float = 3.6, **kwargs):
    """A figure in the house style: returns (fig, axes)."""
    with plt.rc_context(RC):
        return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), **kwargs)


def out_base(result_dir: str | os.PathLike, name: str) -> str:
    """Path without extension for a figure next to its results."""
    return os.path.join(os.fspath(result_dir), name)


def percent(x: float | None) -> float:
    """Fraction -> percent, None -> NaN (drawn as a gap)."""
    return float("nan") if x is None else 100.0 * x


def save_figure(fig, out_base: str | os.PathLike) -> list[str]:
    """Write `fig` as out_base.png and out_base.pdf (atomically); close it; return the paths."""
    paths = []
    with plt.rc_context(RC):
        for ext in ("png", "pdf"):
            path = f"{os.fspath(out_base)}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext)
            paths.append(path)
    plt.close(fig)
    return paths


def save_html(plotly_fig, path: str | os.PathLike) -> str:
    """Write a plotly figure as one self-contained HTML file (plotly.js inlined, no network)."""
    plotly_fig.update_layout(template="plotly_white", font={"size": 13})
    html = plotly_fig.to_html(include_plotlyjs=True, full_html=True, config={"displaylogo": False})
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(html)
    return os.fspath(path)


def lift_norm(lift):
    """A log colour scale symmetric around 1 for lifts over chance (0.5..2 when nothing is finite)."""
    import numpy as np
    from matplotlib.colors import LogNorm

    values = lift[np.isfinite(lift) & (lift > 0)]
    if values.size == 0:
        return LogNorm(0.5, 2)
    span = max(2.0, float(np.exp(np.max(np.abs(np.log(values))))) * 1.05)  # symmetric around 1 on a log scale
    return LogNorm(1 / span, span)


def nan_to_none(grid) -> list:
    """A 2-D array as nested lists with NaN / inf as None (plotly draws gaps, JSON stays strict)."""
    import numpy as np

    return [[None if not np.isfinite(v) else float(v) for v in row] for row in grid]

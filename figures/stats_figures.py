"""Figures of `mftlab stats`: layer x projection heatmap, row/column concentration, magnitude histograms.

Pure functions of stats.json; each figure is written as PNG, PDF and self-contained HTML.
"""

from __future__ import annotations

import numpy as np

from mftlab.figures.style import PALETTE, SEQUENTIAL_CMAP, new_figure, out_base, percent, save_figure, save_html
from mftlab.files.results import read_result

RESULT = "stats"  # the kind of result drawn here (see mftlab.files.results)


def _annotate(ax, grid: np.ndarray, fmt: str, limit: int = 160) -> None:
    """Write cell values when the grid is small enough to read them."""
    if grid.size > limit:
        return
    finite = grid[np.isfinite(grid)]
    mid = (finite.min() + finite.max()) / 2 if finite.size else 0
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=7, color="white" if v < mid else "black")


def heatmap(stats: dict, result_dir) -> list[str]:
    """Masked fraction (%) per layer (rows, in order) and projection (columns)."""
    heat = stats["heatmap"]
    layers, projections = heat["layers"], heat["projections"]
    if not layers or not projections:
        return []
    grid = np.array([[percent(v) for v in row] for row in heat["masked_fraction"]], dtype=float)
    fig, ax = new_figure(width=1.2 + 0.75 * len(projections), height=1.3 + 0.28 * len(layers))
    lo, hi = float(np.nanmin(grid)), float(np.nanmax(grid))
    if hi - lo < 1.0:  # near-uniform ratios: don't let the colour scale blow up rounding noise
        lo, hi = (lo + hi) / 2 - 0.5, (lo + hi) / 2 + 0.5
    image = ax.imshow(
        np.ma.masked_invalid(grid), aspect="auto", cmap=SEQUENTIAL_CMAP, interpolation="nearest", vmin=lo, vmax=hi
    )
    ax.grid(False)
    ax.set_xticks(range(len(projections)), projections, rotation=30 if max(map(len, projections)) > 5 else 0)
    step = max(1, len(layers) // 32)
    ax.set_yticks(range(0, len(layers), step), [str(x) for x in layers[::step]])
    ax.set_xlabel("projection")
    ax.set_ylabel("layer")
    ax.set_title(f"Masked fraction by layer and projection (overall {percent(stats['mask_ratio']):.2f}%)")
    fig.colorbar(image, ax=ax, label="masked weights (%)")
    _annotate(ax, grid, ".1f")
    paths = save_figure(fig, out_base(result_dir, "stats_heatmap"))

    import plotly.graph_objects as go

    pfig = go.Figure(
        go.Heatmap(
            z=grid.tolist(),
            x=projections,
            y=[str(x) for x in layers],
            colorscale="Viridis",
            colorbar={"title": "masked (%)"},
            hovertemplate="layer %{y}, %{x}: %{z:.3f}% masked<extra></extra>",
        )
    )
    pfig.update_layout(
        title="Masked fraction by layer and projection",
        xaxis_title="projection",
        yaxis_title="layer",
        yaxis={"autorange": "reversed", "type": "category"},
    )
    return paths + [save_html(pfig, out_base(result_dir, "stats_heatmap") + ".html")]


def concentration(stats: dict, result_dir) -> list[str]:
    """Lorenz curves of masked fractions over output units and input units, per projection."""
    conc = stats["concentration"]
    axes_names = [a for a in ("output", "input") if conc.get(a)]
    if not axes_names:
        return []
    fig, axes = new_figure(ncols=len(axes_names), width=4.6, height=4.0, squeeze=False)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=1, cols=len(axes_names), subplot_titles=[f"{a} units" for a in axes_names])
    for col, name in enumerate(axes_names):
        ax = axes[0][col]
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="equal spread")
        for i, (proj, data) in enumerate(conc[name].items()):
            curve = np.array([np.nan if v is None else v for v in data["lorenz"]])
            x = np.linspace(0, 1, curve.size)
            color = PALETTE[i % len(PALETTE)]
            ax.plot(x, curve, color=color, label=f"{proj} (Gini {data['gini'] or 0:.3f})")
            pfig.add_trace(
                go.Scatter(
                    x=x,
                    y=curve,
                    name=f"{proj} ({name})",
                    line={"color": color},
                    hovertemplate=(
                        f"{proj}: lowest %{{x:.0%}} of {name} units hold %{{y:.1%}} of masked weight<extra></extra>"
                    ),
                ),
                row=1,
                col=col + 1,
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"fraction of {name} units (least masked first)")
        ax.set_ylabel("cumulative fraction of masked weight")
        ax.set_title(f"Concentration over {name} units")
        ax.legend(fontsize=7, loc="upper left")
    paths = save_figure(fig, out_base(result_dir, "stats_concentration"))
    pfig.update_layout(title="Lorenz curves of masked fraction per unit (diagonal = evenly spread)")
    pfig.update_xaxes(title_text="fraction of units (least masked first)", range=[0, 1])
    pfig.update_yaxes(title_text="cumulative fraction of masked weight", range=[0, 1])
    return paths + [save_html(pfig, out_base(result_dir, "stats_concentration") + ".html")]


_HIST_TITLES = {"weight": ("|w| of the base model", "|w|"), "delta": ("|w_finetuned - w_pretrained|", "|Δw|")}


def magnitudes(stats: dict, result_dir) -> list[str]:
    """Density of |w| (and |Δw|) for masked versus kept weights, log-spaced bins."""
    hists = {k: v for k, v in stats.get("histograms", {}).items() if k in _HIST_TITLES}
    if not hists:
        return []
    fig, axes = new_figure(ncols=len(hists), width=4.8, height=3.6, squeeze=False)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=1, cols=len(hists), subplot_titles=[_HIST_TITLES[k][0] for k in hists])
    for col, (kind, h) in enumerate(hists.items()):
        ax = axes[0][col]
        edges = 10 ** np.array(h["log10_edges"], dtype=float)
        centers = np.sqrt(edges[:-1] * edges[1:])
        for i, part in enumerate(("masked", "kept")):
            counts = np.array(h[part], dtype=float)
            density = counts / max(counts.sum(), 1)  # fraction of that set per bin
            median = h.get(f"median_{part}")
            label = f"{part} (median {median:.2g})" if median is not None else part
            ax.stairs(100 * density, edges, color=PALETTE[i], lw=1.5, label=label)
            pfig.add_trace(
                go.Scatter(
                    x=centers,
                    y=100 * density,
                    mode="lines",
                    line={"shape": "hvh", "color": PALETTE[i]},
                    name=f"{part} {_HIST_TITLES[kind][1]}",
                    customdata=counts,
                    hovertemplate=f"{part}: %{{y:.2f}}% of weights (%{{customdata:,}}) near %{{x:.3g}}<extra></extra>",
                ),
                row=1,
                col=col + 1,
            )
        ax.set_xscale("log")
        ax.set_xlabel(f"{_HIST_TITLES[kind][1]} (log scale)")
        ax.set_ylabel("share of the set per bin (%)")
        ax.set_title(f"{_HIST_TITLES[kind][0]}: masked vs kept")
        ax.legend(fontsize=8)
        pfig.update_xaxes(type="log", title_text=f"{_HIST_TITLES[kind][1]}", row=1, col=col + 1)
    pfig.update_yaxes(title_text="share of the set per bin (%)")
    paths = save_figure(fig, out_base(result_dir, "stats_magnitude"))
    pfig.update_layout(title="Magnitudes of masked versus kept weights")
    return paths + [save_html(pfig, out_base(result_dir, "stats_magnitude") + ".html")]


def render(result_dir) -> list[str]:
    """Redraw every stats figure from RESULT_DIR/stats.json; returns the written paths."""
    stats = read_result(result_dir, RESULT)
    return heatmap(stats, result_dir) + concentration(stats, result_dir) + magnitudes(stats, result_dir)

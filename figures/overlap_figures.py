"""Figures of `mftlab compare-masks`: N x N Jaccard and lift heatmaps, per-layer overlap, k-of-N bars.

Pure functions of overlap.json; each figure is written as PNG, PDF and self-contained HTML.
"""

from __future__ import annotations

import numpy as np

from mftlab.figures.heatmap_parts import label_cells, set_log_ticks
from mftlab.figures.style import (
    DIVERGING_CMAP,
    PALETTE,
    SEQUENTIAL_CMAP,
    lift_norm,
    nan_to_none,
    new_figure,
    out_base,
    save_figure,
    save_html,
)
from mftlab.files.results import read_result

RESULT = "overlap"  # the kind of result drawn here (see mftlab.files.results)


def _matrix(result: dict, metric: str, diagonal: float) -> np.ndarray:
    labels = result["labels"]
    index = {label: i for i, label in enumerate(labels)}
    grid = np.full((len(labels), len(labels)), np.nan)
    np.fill_diagonal(grid, diagonal)
    for row in result["pairs"]:
        if row["level"] == "overall" and row[metric] is not None:
            i, j = index[row["a"]], index[row["b"]]
            grid[i, j] = grid[j, i] = row[metric]
    return grid


def _grids(result: dict) -> tuple[np.ndarray, np.ndarray]:
    """(Jaccard, lift) of every pair; a mask's lift with itself says nothing about chance overlap (NaN)."""
    return _matrix(result, "jaccard", 1.0), _matrix(result, "lift", np.nan)


def _matrix_panel(fig, ax, labels: list[str], panel: tuple) -> None:
    """One N x N heatmap with its colour bar and cell values; `panel` is (grid, title, bar label, cmap, norm, fmt)."""
    grid, title, bar_label, cmap, norm, fmt = panel
    n = len(labels)
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        cmap=cmap,
        norm=norm,
        vmin=None if norm else 0,
        vmax=None if norm else 1,
        interpolation="nearest",
    )
    ax.grid(False)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("mask")
    ax.set_ylabel("mask")
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax, shrink=0.85, label=bar_label)
    if norm is not None:
        set_log_ticks(bar, norm, (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100))
    label_cells(ax, grid, lambda i, j, v: format(v, fmt), fontsize=8, pad=0.15, alpha=0.7)


def _matrices_static(result: dict, base: str) -> list[str]:
    labels = result["labels"]
    jac, lift = _grids(result)
    size = 1.6 + 0.55 * len(labels)
    longest = max(len(label) for label in labels)
    fig, axes = new_figure(ncols=2, width=size + 0.9 + 0.05 * longest, height=size + 0.05 * longest)
    fig.subplots_adjust(wspace=0.3 + 0.035 * longest)  # room for the colour bar and the next panel's labels
    panels = (
        (jac, "Jaccard of masked sets", "Jaccard (0-1)", SEQUENTIAL_CMAP, None, ".2f"),
        (
            lift,
            "Lift over independent masks",
            "lift = shared / expected (log, 1 = chance)",
            DIVERGING_CMAP,
            lift_norm(lift),
            ".2f",
        ),
    )
    for ax, panel in zip(axes, panels):
        _matrix_panel(fig, ax, labels, panel)
    return save_figure(fig, base)


def _matrices_interactive(result: dict, path: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = result["labels"]
    jac, lift = _grids(result)
    pfig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["Jaccard of masked sets", "lift (observed / expected shared)"],
        horizontal_spacing=0.18,
    )
    pfig.add_trace(
        go.Heatmap(
            z=nan_to_none(jac),
            x=labels,
            y=labels,
            colorscale="Viridis",
            zmin=0,
            zmax=1,
            colorbar={"title": "Jaccard", "x": 0.42},
            hovertemplate="%{y} vs %{x}: Jaccard %{z:.4f}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    pfig.add_trace(
        go.Heatmap(
            z=nan_to_none(lift),
            x=labels,
            y=labels,
            colorscale="RdBu_r",
            zmid=1,
            colorbar={"title": "lift"},
            hovertemplate="%{y} vs %{x}: lift %{z:.3f}<extra></extra>",
        ),
        row=1,
        col=2,
    )
    pfig.update_yaxes(autorange="reversed")
    pfig.update_layout(title="Overlap of masked weights between masks")
    return save_html(pfig, path)


def matrices(result: dict, result_dir) -> list[str]:
    """Jaccard of masked sets, and lift (observed / expected shared), for every pair."""
    base = out_base(result_dir, "overlap_matrix")
    return _matrices_static(result, base) + [_matrices_interactive(result, base + ".html")]


def layer_curves(result: dict, result_dir) -> list[str]:
    """Jaccard and lift per layer for every pair of masks."""
    layers = result.get("layers") or []
    if not layers:
        return []
    rows = [r for r in result["pairs"] if r["level"] == "layer"]
    pairs = list(dict.fromkeys((r["a"], r["b"]) for r in rows))
    x = [int(layer) for layer in layers]
    fig, axes = new_figure(ncols=2, width=5.0, height=3.6)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=1, cols=2, subplot_titles=["Jaccard of masked sets per layer", "lift per layer"])
    for k, (a, b) in enumerate(pairs):
        by_layer = {r["group"]: r for r in rows if (r["a"], r["b"]) == (a, b)}
        color = PALETTE[k % len(PALETTE)]
        for col, metric in enumerate(("jaccard", "lift")):
            y = [np.nan if by_layer[layer][metric] is None else by_layer[layer][metric] for layer in layers]
            axes[col].plot(x, y, marker="o", ms=3, color=color, label=f"{a} vs {b}")
            pfig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines+markers",
                    name=f"{a} vs {b}",
                    legendgroup=f"{a}|{b}",
                    showlegend=col == 0,
                    line={"color": color},
                    hovertemplate=f"{a} vs {b}, layer %{{x}}: {metric} %{{y:.4f}}<extra></extra>",
                ),
                row=1,
                col=col + 1,
            )
    axes[1].axhline(1.0, color="grey", lw=0.8, ls="--", label="chance (lift 1)")
    for ax, label in zip(axes, ("Jaccard of masked sets (0-1)", "lift (observed / expected)")):
        ax.set_xlabel("layer")
        ax.set_ylabel(label)
        ax.set_xticks(x if len(x) <= 16 else x[:: max(1, len(x) // 16)])
    axes[0].set_title("Overlap per layer")
    axes[1].set_title("Lift per layer")
    axes[0].set_ylim(bottom=0)
    axes[1].legend(fontsize=7, loc="best")
    paths = save_figure(fig, out_base(result_dir, "overlap_layers"))
    pfig.update_xaxes(title_text="layer", dtick=1 if len(x) <= 16 else None)
    pfig.update_yaxes(title_text="Jaccard", row=1, col=1)
    pfig.update_yaxes(title_text="lift", row=1, col=2)
    pfig.update_layout(title="Overlap of masked weights per layer")
    return paths + [save_html(pfig, out_base(result_dir, "overlap_layers") + ".html")]


def consensus(result: dict, result_dir) -> list[str]:
    """Weights masked by exactly k of the N masks (k >= 1), and by each mask alone."""
    overall = next(r for r in result["consensus"] if r["level"] == "overall")
    exactly, numel = overall["exactly"], overall["numel"]
    ks = list(range(1, len(exactly)))
    share = [100 * exactly[k] / numel for k in ks]
    labels = list(overall["only"])
    alone = [100 * overall["only"][label] / numel for label in labels]
    fig, axes = new_figure(ncols=2, width=4.6, height=3.6)
    axes[0].bar([str(k) for k in ks], share, color=PALETTE[0])
    axes[0].set_xlabel(f"k = number of masks (of {len(exactly) - 1}) that mask the weight")
    axes[0].set_ylabel("weights (% of all compared)")
    axes[0].set_title(f"k-of-N consensus (k = 0: {100 * exactly[0] / numel:.1f}%)")
    axes[1].bar(labels, alone, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])
    axes[1].set_xlabel("mask")
    axes[1].set_ylabel("weights (% of all compared)")
    axes[1].set_title("Masked by this mask alone")
    axes[1].tick_params(axis="x", rotation=30)
    for ax, values in zip(axes, (share, alone)):
        for i, v in enumerate(values):
            ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=7)
        ax.set_ylim(0, max(values + [1e-9]) * 1.15)
    paths = save_figure(fig, out_base(result_dir, "overlap_consensus"))

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    pfig = make_subplots(rows=1, cols=2, subplot_titles=["masked by exactly k masks", "masked by this mask alone"])
    pfig.add_trace(
        go.Bar(
            x=ks,
            y=share,
            customdata=[exactly[k] for k in ks],
            name="k of N",
            hovertemplate="k=%{x}: %{customdata:,} weights (%{y:.3f}%)<extra></extra>",
        ),
        row=1,
        col=1,
    )
    pfig.add_trace(
        go.Bar(
            x=labels,
            y=alone,
            customdata=[overall["only"][label] for label in labels],
            name="alone",
            hovertemplate="%{x}: %{customdata:,} weights (%{y:.3f}%)<extra></extra>",
        ),
        row=1,
        col=2,
    )
    pfig.update_xaxes(title_text="k (masks that mask the weight)", dtick=1, row=1, col=1)
    pfig.update_xaxes(title_text="mask", row=1, col=2)
    pfig.update_yaxes(title_text="weights (% of all compared)")
    pfig.update_layout(title="k-of-N consensus of masked weights", showlegend=False)
    return paths + [save_html(pfig, out_base(result_dir, "overlap_consensus") + ".html")]


def render(result_dir) -> list[str]:
    """Redraw every overlap figure from RESULT_DIR/overlap.json; returns the written paths."""
    result = read_result(result_dir, RESULT)
    return matrices(result, result_dir) + layer_curves(result, result_dir) + consensus(result, result_dir)

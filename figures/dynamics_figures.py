"""Figure of mask dynamics: flips between snapshots and distance to the first and final mask.

Pure function of dynamics.json; written as PNG, PDF and self-contained HTML.
"""

from __future__ import annotations

import matplotlib
import numpy as np

from mftlab.figures.style import PALETTE, SEQUENTIAL_CMAP, new_figure, out_base, save_figure, save_html
from mftlab.files.results import read_result

RESULT = "dynamics"  # the kind of result drawn here (see mftlab.files.results)
_MAX_LEGEND_LAYERS = 8  # more layers: colour by layer with a colour bar


def _x_axis(result: dict) -> tuple[list, str]:
    steps = result["steps"]
    known = all(s is not None for s in steps) and all(b > a for a, b in zip(steps, steps[1:]))
    return (steps, "training step") if known else (list(range(len(steps))), "snapshot")


def _flip_percent(result: dict) -> dict[str, np.ndarray]:
    """Flips per interval as a percentage of each group's weights, for "all" and every layer."""
    numel = result["numel"]
    return {g: 100 * np.array(v, dtype=float) / numel[g] for g, v in result["flips"].items()}


def _distance_percent(result: dict, key: str) -> np.ndarray:
    """Hamming distance of every snapshot to the first ("to_first") or final ("to_final") mask, in %."""
    return 100 * np.array(result[key]["all"], dtype=float) / result["numel"]["all"]


def _flips_panel(fig, ax, result: dict, x: list, x_label: str) -> None:
    """Flips between consecutive snapshots, per layer and overall (a colour bar instead of a long legend)."""
    layers, pct = result["layers"], _flip_percent(result)
    many = len(layers) > _MAX_LEGEND_LAYERS
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    for i, layer in enumerate(layers):
        color = cmap(i / max(len(layers) - 1, 1)) if many else PALETTE[(i + 1) % len(PALETTE)]
        ax.plot(x[1:], pct[layer], lw=0.9, color=color, alpha=0.8, label=None if many else f"layer {layer}")
    ax.plot(x[1:], pct["all"], lw=2.2, color="black", marker="o", ms=3, label="all layers")
    ax.set_xlabel(f"{x_label} (end of interval)")
    ax.set_ylabel("weights flipped since previous snapshot (%)")
    ax.set_title("Flips between consecutive snapshots")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    if many:
        scalar = matplotlib.cm.ScalarMappable(
            cmap=cmap, norm=matplotlib.colors.Normalize(int(layers[0]), int(layers[-1]))
        )
        fig.colorbar(scalar, ax=ax, label="layer")


def _distance_panel(ax, result: dict, x: list, x_label: str) -> None:
    for i, (key, name) in enumerate((("to_first", "to the first mask"), ("to_final", "to the final mask"))):
        ax.plot(x, _distance_percent(result, key), marker="o", ms=3, color=PALETTE[i], label=name)
    ax.set_xlabel(x_label)
    ax.set_ylabel("Hamming distance (% of weights)")
    ax.set_title("Distance to the first and final mask")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)


def _static(result: dict, base: str) -> list[str]:
    x, x_label = _x_axis(result)
    fig, axes = new_figure(ncols=2, width=5.0, height=3.7)
    _flips_panel(fig, axes[0], result, x, x_label)
    _distance_panel(axes[1], result, x, x_label)
    if x_label == "snapshot":
        for a in axes:
            a.set_xticks(x, result["labels"], rotation=30, ha="right", fontsize=7)
    return save_figure(fig, base)


def _interactive(result: dict, path: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x, x_label = _x_axis(result)
    labels, pct = result["labels"], _flip_percent(result)
    pfig = make_subplots(rows=1, cols=2, subplot_titles=["flips between consecutive snapshots", "Hamming distance"])
    for group in ["all"] + result["layers"]:
        pfig.add_trace(
            go.Scatter(
                x=x[1:],
                y=pct[group],
                mode="lines+markers",
                name="all layers" if group == "all" else f"layer {group}",
                line={"width": 3 if group == "all" else 1, "color": "black" if group == "all" else None},
                customdata=list(zip(labels[1:], result["flips"][group])),
                hovertemplate=f"{'all' if group == 'all' else 'layer ' + group}, %{{customdata[0]}}: "
                "%{customdata[1]:,} flips (%{y:.3f}%)<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for i, (key, name) in enumerate((("to_first", "to first"), ("to_final", "to final"))):
        pfig.add_trace(
            go.Scatter(
                x=x,
                y=_distance_percent(result, key),
                mode="lines+markers",
                name=f"distance {name}",
                line={"color": PALETTE[i]},
                customdata=labels,
                hovertemplate=f"%{{customdata}}: distance {name} %{{y:.3f}}%<extra></extra>",
            ),
            row=1,
            col=2,
        )
    pfig.update_xaxes(title_text=x_label)
    pfig.update_yaxes(title_text="weights flipped (%)", row=1, col=1)
    pfig.update_yaxes(title_text="Hamming distance (% of weights)", row=1, col=2)
    pfig.update_layout(title="Mask dynamics over training")
    return save_html(pfig, path)


def render(result_dir) -> list[str]:
    """Redraw the dynamics figure from RESULT_DIR/dynamics.json; returns the written paths."""
    result = read_result(result_dir, RESULT)
    base = out_base(result_dir, "dynamics_flips")
    return _static(result, base) + [_interactive(result, base + ".html")]

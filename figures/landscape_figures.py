"""Loss-landscape figures (the paper's Figures 6 and 10) from landscape.json + landscape.npz.

2-D: train and test side by side, filled contours with log-spaced levels (top) and 3-D surfaces
(bottom), on one shared logarithmic colour scale, with the models marked (first: star, e.g. the
FFT upper bound; second: square, continued FFT; third: triangle, MFT; further ones: circle,
diamond, ...). Written as landscape.png / .pdf and one interactive landscape.html (rotatable
surfaces and contour maps with hover values). 1-D: the two loss curves, landscape_1d.*.

Arrays follow the stored layout: loss[j, i] is the loss at (xs[i], ys[j]) (matplotlib's Z).
"""

from __future__ import annotations

import os

import numpy as np

from mftlab.figures.style import PALETTE, SEQUENTIAL_CMAP, new_figure, save_figure, save_html
from mftlab.files.results import read_arrays, read_result

RESULT = "landscape"  # the kind of result drawn here (see mftlab.files.results)
MARKERS = ["*", "s", "^", "o", "D", "v", "P", "X"]
PLOTLY_MARKERS = ["star", "square", "triangle-up", "circle", "diamond", "triangle-down", "cross", "x"]
PLOTLY_MARKERS_3D = ["diamond", "square", "cross", "circle", "x", "circle-open", "square-open", "diamond-open"]
MARKER_COLOURS = ["#FFFFFF", "#E69F00", "#D55E00", "#CC79A7", "#56B4E9", "#009E73", "#F0E442", "#000000"]
COLOURBAR_LABEL = "loss (nats/token)"
SPLITS = (("train", "train loss"), ("test", "test loss"))


def load_results(result_dir: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(landscape.json as a dict, arrays of landscape.npz), both kind-checked."""
    return read_result(result_dir, RESULT), read_arrays(result_dir, RESULT)


def axis_labels(doc: dict) -> tuple[str, str]:
    kind = doc.get("plane", {}).get("kind", "random")
    if kind == "random":
        norm = doc.get("config", {}).get("directions", {}).get("normalization", "filter")
        return f"direction 1 ({norm}-normalised)", f"direction 2 ({norm}-normalised)"
    if kind == "line":
        return "interpolation t (model 1 at 0, model 2 at 1)", ""
    return "u: distance in weight space", "v: distance in weight space"


def _marker_label(m: dict) -> str:
    if "off_plane_relative" in m:
        return f"{m['label']} (off-plane {m['off_plane_relative']:.0%})"
    return m["label"]


def log_levels(arrays: list[np.ndarray], n: int = 24) -> np.ndarray:
    """Log-spaced levels spanning the finite values of every array (one shared scale)."""
    values = np.concatenate([a[np.isfinite(a) & (a > 0)].ravel() for a in arrays])
    if values.size == 0:
        return np.geomspace(1e-3, 1.0, n)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo * (1 + 1e-9):
        lo, hi = lo * 0.99, hi * 1.01
    return np.geomspace(lo, hi, n)


def _contour_panel(ax, doc: dict, surface: tuple, *, levels: np.ndarray, norm, title: str):
    """Filled log contours of one split with the models marked; returns the contour set (for the colour bar)."""
    X, Y, z = surface
    filled = ax.contourf(X, Y, z, levels=levels, norm=norm, cmap=SEQUENTIAL_CMAP)
    ax.contour(X, Y, z, levels=levels[::3], norm=norm, colors="k", linewidths=0.4, alpha=0.5)
    xlabel, ylabel = axis_labels(doc)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(False)
    for k, m in enumerate(doc["markers"]):
        ax.plot(
            m["x"],
            m["y"],
            MARKERS[k % len(MARKERS)],
            markersize=15 if k == 0 else 10,
            markerfacecolor=MARKER_COLOURS[k % len(MARKER_COLOURS)],
            markeredgecolor="k",
            label=_marker_label(m),
            linestyle="none",
        )
    return filled


def _surface_panel(ax3, doc: dict, surface: tuple, *, levels: np.ndarray, norm, split: str, title: str) -> None:
    """One split's loss as a 3-D surface on the shared scale, with the models that have a loss marked on it."""
    X, Y, z = surface
    ax3.plot_surface(X, Y, z, norm=norm, cmap=SEQUENTIAL_CMAP, linewidth=0, antialiased=True, alpha=0.9)
    for k, m in enumerate(doc["markers"]):
        if m.get(f"{split}_loss") is not None:
            ax3.scatter(
                [m["x"]],
                [m["y"]],
                [m[f"{split}_loss"]],
                marker=MARKERS[k % len(MARKERS)],
                s=120,
                c=MARKER_COLOURS[k % len(MARKER_COLOURS)],
                edgecolors="k",
                depthshade=False,
                zorder=10,
            )
    ax3.set_zlim(levels[0], levels[-1])  # the shared scale, as in the colour bar
    ax3.set(
        title=f"{title} (surface)",
        xlabel="u" if doc["plane"]["kind"] != "random" else "d1",
        ylabel="v" if doc["plane"]["kind"] != "random" else "d2",
        zlabel=COLOURBAR_LABEL,
    )


def _legend_and_colour_bar(fig, axes, filled, levels: np.ndarray) -> None:
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        names,
        loc="upper center",
        ncol=max(1, len(names)),
        bbox_to_anchor=(0.47, 0.995),
        frameon=False,
        numpoints=1,
    )
    fig.subplots_adjust(top=0.91, right=0.86, hspace=0.3, wspace=0.3)
    cax = fig.add_axes([0.89, 0.15, 0.02, 0.7])
    bar = fig.colorbar(filled, cax=cax, ticks=np.geomspace(levels[0], levels[-1], 7))
    bar.ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))
    bar.ax.yaxis.set_minor_formatter(NullFormatter())
    bar.set_label(COLOURBAR_LABEL)


def _render_2d(result_dir: str, doc: dict, arrays: dict) -> list[str]:
    from matplotlib.colors import LogNorm

    X, Y = np.meshgrid(arrays["xs"], arrays["ys"])  # (ny, nx), matching loss[j, i]
    losses = {s: np.where(np.isfinite(arrays[f"{s}_loss"]), arrays[f"{s}_loss"], np.nan) for s, _ in SPLITS}
    levels = log_levels(list(losses.values()))
    norm = LogNorm(vmin=levels[0], vmax=levels[-1])  # one instance: every panel and the colour bar share it
    fig, axes = new_figure(ncols=2, nrows=2, width=5.4, height=4.4)
    for col, (split, title) in enumerate(SPLITS):
        surface = (X, Y, np.clip(losses[split], levels[0], levels[-1]))
        filled = _contour_panel(axes[0, col], doc, surface, levels=levels, norm=norm, title=title)
        axes[1, col].remove()
        ax3 = fig.add_subplot(2, 2, 3 + col, projection="3d", computed_zorder=False)  # markers over the surface
        _surface_panel(ax3, doc, surface, levels=levels, norm=norm, split=split, title=title)
    _legend_and_colour_bar(fig, axes, filled, levels)
    return save_figure(fig, os.path.join(result_dir, "landscape"))


def _render_1d(result_dir: str, doc: dict, arrays: dict) -> list[str]:
    xs = arrays["xs"]
    fig, ax = new_figure(width=6.0, height=4.0)
    for c, (split, title) in enumerate(SPLITS):
        ax.plot(xs, arrays[f"{split}_loss"][0], color=PALETTE[c], label=title)
    for k, m in enumerate(doc["markers"]):
        for split, _ in SPLITS:
            if m.get(f"{split}_loss") is not None:
                ax.plot(
                    m["x"],
                    m[f"{split}_loss"],
                    MARKERS[k % len(MARKERS)],
                    markersize=11,
                    markerfacecolor=MARKER_COLOURS[(k + 1) % len(MARKER_COLOURS)],
                    markeredgecolor="k",
                    linestyle="none",
                    label=_marker_label(m) if split == "train" else None,
                )
    ax.set(xlabel=axis_labels(doc)[0] if doc["plane"]["kind"] != "random" else "direction 1", ylabel=COLOURBAR_LABEL)
    ax.legend(loc="best", numpoints=1)
    return save_figure(fig, os.path.join(result_dir, "landscape_1d"))


def _log_ticks(levels: np.ndarray) -> tuple[list[float], list[str]]:
    ticks = np.geomspace(levels[0], levels[-1], 6)
    return [float(np.log10(t)) for t in ticks], [f"{t:.3g}" for t in ticks]


def _add_loss_traces(fig, arrays: dict, split: str, levels: np.ndarray, col: int) -> None:
    """One split's loss as a surface (row 1) and log contours (row 2), coloured on the shared log scale."""
    import plotly.graph_objects as go

    xs, ys, z = arrays["xs"], arrays["ys"], arrays[f"{split}_loss"]
    cmin, cmax = float(np.log10(levels[0])), float(np.log10(levels[-1]))
    tickvals, ticktext = _log_ticks(levels)
    logz = np.log10(np.clip(z, levels[0], levels[-1]))
    fig.add_trace(
        go.Surface(
            x=xs,
            y=ys,
            z=z,
            surfacecolor=logz,
            cmin=cmin,
            cmax=cmax,
            colorscale="Viridis",
            colorbar={"title": {"text": COLOURBAR_LABEL}, "tickvals": tickvals, "ticktext": ticktext},
            showscale=col == 1,
            name=split,
            hovertemplate="x=%{x:.4g}<br>y=%{y:.4g}<br>loss=%{z:.5g}<extra></extra>",
        ),
        row=1,
        col=col,
    )
    fig.add_trace(
        go.Contour(
            x=xs,
            y=ys,
            z=logz,
            zmin=cmin,
            zmax=cmax,
            colorscale="Viridis",
            showscale=False,
            customdata=z,
            contours={"start": cmin, "end": cmax, "size": (cmax - cmin) / 20},
            hovertemplate="x=%{x:.4g}<br>y=%{y:.4g}<br>loss=%{customdata:.5g}<extra></extra>",
        ),
        row=2,
        col=col,
    )


def _add_marker_traces(fig, doc: dict, split: str, col: int) -> None:
    """The models on the surface (when they have a loss for the split) and on the contour map."""
    import plotly.graph_objects as go

    for k, m in enumerate(doc["markers"]):
        loss = m.get(f"{split}_loss")
        style = {"color": MARKER_COLOURS[k % len(MARKER_COLOURS)], "line": {"color": "black", "width": 1}}
        if loss is not None:
            fig.add_trace(
                go.Scatter3d(
                    x=[m["x"]],
                    y=[m["y"]],
                    z=[loss],
                    mode="markers",
                    name=_marker_label(m),
                    legendgroup=m["label"],
                    showlegend=False,
                    marker={**style, "size": 7, "symbol": PLOTLY_MARKERS_3D[k % 8]},
                ),
                row=1,
                col=col,
            )
        fig.add_trace(
            go.Scatter(
                x=[m["x"]],
                y=[m["y"]],
                mode="markers",
                name=_marker_label(m),
                legendgroup=m["label"],
                showlegend=col == 1,
                marker={**style, "size": 16 if k == 0 else 12, "symbol": PLOTLY_MARKERS[k % 8]},
            ),
            row=2,
            col=col,
        )


def _render_html(result_dir: str, doc: dict, arrays: dict) -> str:
    from plotly.subplots import make_subplots

    levels = log_levels([arrays["train_loss"], arrays["test_loss"]])
    fig = make_subplots(
        rows=2,
        cols=2,
        specs=[[{"type": "surface"}] * 2, [{"type": "xy"}] * 2],
        subplot_titles=["train loss", "test loss", "train loss (log contours)", "test loss (log contours)"],
        vertical_spacing=0.08,
        row_heights=[0.6, 0.4],
    )
    xlabel, ylabel = axis_labels(doc)
    for col, (split, _) in enumerate(SPLITS, 1):
        _add_loss_traces(fig, arrays, split, levels, col)
        _add_marker_traces(fig, doc, split, col)
        fig.update_xaxes(title_text=xlabel, row=2, col=col)
        fig.update_yaxes(title_text=ylabel, row=2, col=col)
    scene = {"xaxis_title": "x", "yaxis_title": "y", "zaxis_title": "loss"}
    fig.update_layout(
        height=1000, width=1200, scene=scene, scene2=scene, title=f"Loss landscape ({doc['plane']['kind']} plane)"
    )
    return save_html(fig, os.path.join(result_dir, "landscape.html"))


def render(result_dir: str | os.PathLike) -> list[str]:
    """Draw every landscape figure of `result_dir`; returns the written paths."""
    result_dir = os.fspath(result_dir)
    doc, arrays = load_results(result_dir)
    if len(arrays["ys"]) == 1:
        return _render_1d(result_dir, doc, arrays)
    return _render_2d(result_dir, doc, arrays) + [_render_html(result_dir, doc, arrays)]

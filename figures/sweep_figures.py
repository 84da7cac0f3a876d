"""Sweep figures (the paper's Figures 3-5, and the score-lr / score-init sweeps): validation score per
sweep point against the FFT line, the test score beside it when the sweep has one, and the selected
point (best validation loss) ringed."""

from __future__ import annotations

from mftlab.figures.style import PALETTE, new_figure, out_base, percent, save_figure, save_html
from mftlab.files.results import read_result

RESULT = "sweep"  # the kind of result drawn here (see mftlab.files.results)
XLABELS = {
    "layers": "MFT layer group (consecutive layers, shallow to deep)",
    "ratio": "mask ratio (fraction masked)",
    "data": "fraction of MFT training data",
    "score-lr": "score learning rate (--score-lr)",
    "score-init": "score initialisation (--score-init)",
}
TITLES = {
    "layers": "Local MFT by layer group",
    "ratio": "Masking-ratio sweep",
    "data": "Data-ratio sweep",
    "score-lr": "Score learning-rate sweep",
    "score-init": "Score initialisation sweep",
}
CATEGORICAL = ("layers", "score-init")
# (key in a point, axis label, shown as a percentage): the two panels, left to right.
METRICS = (("answer_accuracy", "answer accuracy (%)", True), ("loss", "eval loss (nats/token)", False))


def _shown(value, is_percent: bool):
    """A score as drawn: fractions as percentages for the percent metrics."""
    return percent(value) if is_percent else value


def _series(points: list[dict], key: str, is_percent: bool) -> list:
    """One metric of every sweep point, as drawn."""
    return [_shown(p[key], is_percent) for p in points]


def _layout(doc: dict) -> tuple[list, list[str], bool, list[int]]:
    """(x positions, point labels, whether test scores exist, indices of the selected points)."""
    points = doc["points"]
    labels = [p["label"] for p in points]
    xs = list(range(len(points))) if doc["axis"] in CATEGORICAL else [p["value"] for p in points]
    has_test = all("test_loss" in p for p in points)
    chosen = [i for i, p in enumerate(points) if p.get("selected")]
    return xs, labels, has_test, chosen


def _static_panel(ax, doc: dict, metric: tuple) -> None:
    (key, name, is_percent), points, axis = metric, doc["points"], doc["axis"]
    xs, labels, has_test, chosen = _layout(doc)
    ys = _series(points, key, is_percent)
    ax.plot(xs, ys, "o-", color=PALETTE[2], label="MFT (validation)" if has_test else "MFT")
    if has_test:
        ax.plot(
            xs,
            _series(points, "test_" + key, is_percent),
            "s:",
            color=PALETTE[3],
            label="MFT (test, not used to choose)",
        )
    for i in chosen:
        ax.plot([xs[i]], [ys[i]], "o", ms=13, mfc="none", mec="black", mew=1.4, label="selected (best validation loss)")
    ax.axhline(_shown(doc["reference"][key], is_percent), color=PALETTE[0], ls="--", label="starting model (FFT)")
    ax.set_xlabel(XLABELS[axis])
    ax.set_ylabel(name)
    if axis in CATEGORICAL:
        ax.set_xticks(xs, labels, rotation=45 if len(xs) > 6 else 0)
    elif axis in ("ratio", "data", "score-lr"):
        ax.set_xscale("log")
        ax.set_xticks(xs, labels)
        ax.minorticks_off()


def _static(doc: dict, base: str) -> list[str]:
    fig, axes = new_figure(ncols=2, width=4.6, height=3.4)
    for ax, metric in zip(axes, METRICS):
        _static_panel(ax, doc, metric)
    axes[0].legend(fontsize=7)
    fig.suptitle(TITLES[doc["axis"]])
    fig.tight_layout()
    return save_figure(fig, base)


def _interactive_panel(web, doc: dict, col: int, metric: tuple) -> None:
    import plotly.graph_objects as go

    (key, _, is_percent), points = metric, doc["points"]
    xs, labels, has_test, chosen = _layout(doc)
    x = labels if doc["axis"] in CATEGORICAL else xs
    ys = _series(points, key, is_percent)
    web.add_trace(
        go.Scatter(
            x=x,
            y=ys,
            mode="lines+markers",
            name="MFT (validation)" if has_test else "MFT",
            showlegend=col == 1,
            line={"color": PALETTE[2]},
            hovertemplate="%{x}: %{y:.3f}",
        ),
        1,
        col,
    )
    if has_test:
        web.add_trace(
            go.Scatter(
                x=x,
                y=_series(points, "test_" + key, is_percent),
                mode="lines+markers",
                name="MFT (test, not used to choose)",
                showlegend=col == 1,
                line={"color": PALETTE[3], "dash": "dot"},
            ),
            1,
            col,
        )
    web.add_trace(
        go.Scatter(
            x=[x[i] for i in chosen],
            y=[ys[i] for i in chosen],
            mode="markers",
            name="selected (best validation loss)",
            showlegend=col == 1,
            marker={"size": 16, "symbol": "circle-open", "color": "black"},
        ),
        1,
        col,
    )
    web.add_hline(
        y=_shown(doc["reference"][key], is_percent),
        line={"color": PALETTE[0], "dash": "dash"},
        row=1,
        col=col,
        annotation_text="FFT",
    )


def _interactive(doc: dict, path: str) -> str:
    from plotly.subplots import make_subplots

    web = make_subplots(rows=1, cols=2, subplot_titles=[m[1] for m in METRICS])
    for col, metric in enumerate(METRICS, 1):
        _interactive_panel(web, doc, col, metric)
    if doc["axis"] == "score-lr":
        web.update_xaxes(type="log")
    web.update_layout(title=TITLES[doc["axis"]], height=420)
    return save_html(web, path)


def render(result_dir) -> list[str]:
    """Redraw the sweep figure from RESULT_DIR/sweep.json; returns the written paths."""
    doc = read_result(result_dir, RESULT)
    base = out_base(result_dir, f"sweep_{doc['axis']}")
    return _static(doc, base) + [_interactive(doc, base + ".html")]

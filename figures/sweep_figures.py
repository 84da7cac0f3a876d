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


def render(result_dir) -> list[str]:
    doc = read_result(result_dir, RESULT)
    points, ref, axis = doc["points"], doc["reference"], doc["axis"]
    labels = [p["label"] for p in points]
    xs = list(range(len(points))) if axis in CATEGORICAL else [p["value"] for p in points]
    metrics = [("answer_accuracy", "answer accuracy (%)", True), ("loss", "eval loss (nats/token)", False)]
    has_test = all("test_loss" in p for p in points)
    chosen = [i for i, p in enumerate(points) if p.get("selected")]
    fig, axes = new_figure(ncols=2, width=4.6, height=3.4)
    for ax, (key, name, is_percent) in zip(axes, metrics):
        ys = [percent(p[key]) if is_percent else p[key] for p in points]
        line = percent(ref[key]) if is_percent else ref[key]
        ax.plot(xs, ys, "o-", color=PALETTE[2], label="MFT (validation)" if has_test else "MFT")
        if has_test:
            test = [percent(p["test_" + key]) if is_percent else p["test_" + key] for p in points]
            ax.plot(xs, test, "s:", color=PALETTE[3], label="MFT (test, not used to choose)")
        for i in chosen:
            ax.plot(
                [xs[i]], [ys[i]], "o", ms=13, mfc="none", mec="black", mew=1.4, label="selected (best validation loss)"
            )
        ax.axhline(line, color=PALETTE[0], ls="--", label="starting model (FFT)")
        ax.set_xlabel(XLABELS[axis])
        ax.set_ylabel(name)
        if axis in CATEGORICAL:
            ax.set_xticks(xs, labels, rotation=45 if len(xs) > 6 else 0)
        elif axis in ("ratio", "data", "score-lr"):
            ax.set_xscale("log")
            ax.set_xticks(xs, labels)
            ax.minorticks_off()
    axes[0].legend(fontsize=7)
    fig.suptitle(TITLES[axis])
    fig.tight_layout()
    base = out_base(result_dir, f"sweep_{axis}")
    written = save_figure(fig, base)

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    web = make_subplots(rows=1, cols=2, subplot_titles=[m[1] for m in metrics])
    for col, (key, name, is_percent) in enumerate(metrics, 1):
        ys = [percent(p[key]) if is_percent else p[key] for p in points]
        x = labels if axis in CATEGORICAL else xs
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
            test = [percent(p["test_" + key]) if is_percent else p["test_" + key] for p in points]
            web.add_trace(
                go.Scatter(
                    x=x,
                    y=test,
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
            y=percent(ref[key]) if is_percent else ref[key],
            line={"color": PALETTE[0], "dash": "dash"},
            row=1,
            col=col,
            annotation_text="FFT",
        )
    if axis == "score-lr":
        web.update_xaxes(type="log")
    web.update_layout(title=TITLES[axis], height=420)
    written.append(save_html(web, base + ".html"))
    return written

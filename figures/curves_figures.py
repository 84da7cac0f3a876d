"""Training curves like the paper's Figure 2, from a protocol's `demo.json`.

Validation loss against optimizer steps: FFT from the backbone, continued FFT and MFT both
starting at the best FFT checkpoint (so their x-axis is offset by its step), LoRA from the
backbone; the backbone, random-mask and magnitude-mask models as horizontal reference lines.
Which runs are curves, their labels, which start at the upper bound's best checkpoint and which
methods are reference lines all come from the results (`curve_names`, `curve_from`,
`reference_lines`, `roles`); colours and line styles are the style module's, by position.
"""

from __future__ import annotations

import os

from mftlab.figures.style import LINE_STYLES, PALETTE, REFERENCE_COLORS, new_figure, save_figure, save_html
from mftlab.files.results import read_result


def curve_styles(demo: dict) -> dict[str, tuple[str, str]]:
    """method -> (colour, line style) of every curve, by its position in `curve_names`."""
    return {
        m: (PALETTE[k % len(PALETTE)], LINE_STYLES[k % len(LINE_STYLES)]) for k, m in enumerate(demo["curve_names"])
    }


def reference_colors(demo: dict) -> dict[str, str]:
    return {m: REFERENCE_COLORS[k % len(REFERENCE_COLORS)] for k, m in enumerate(demo["reference_lines"])}


def curve_points(demo: dict, domain: str, method: str) -> tuple[list[int], list[float]]:
    """(steps, validation losses) of one run, with runs that start at the upper bound's best shifted there."""
    runs, upper = demo["curves"][domain], demo["roles"]["upper_bound"]
    if method not in runs:
        return [], []
    offset = runs[upper]["best_step"] or 0 if method in demo["curve_from"] else 0
    points = runs[method]["curve"]
    # A run that logged its own step 0 (MFT: the step-0 mask) starts there, not at the FFT best.
    start = offset and not (points and points[0]["step"] == 0)
    xs = ([offset] if start else []) + [p["step"] + offset for p in points]
    ys = ([runs[upper]["best_eval_loss"]] if start else []) + [p["eval_loss"] for p in points]
    return xs, ys


def step0_point(demo: dict, domain: str) -> tuple[int, float] | None:
    """(x, validation loss) of the method's step-0 mask, before any training, when the run logged it."""
    runs = demo["curves"][domain]
    curve = runs.get(demo["roles"]["method"], {}).get("curve", [])
    if not curve or curve[0]["step"] != 0:
        return None
    return runs[demo["roles"]["upper_bound"]]["best_step"] or 0, curve[0]["eval_loss"]


def reference_losses(demo: dict, domain: str) -> dict[str, float]:
    scores = demo["scores"][str(demo["seeds"][0])][domain]
    return {m: scores[m]["validation_loss"] for m in demo["reference_lines"] if m in scores}


def _step0_label(demo: dict) -> str:
    return f"{demo['method_short'][demo['roles']['method']]} step-0 mask"


def _plot_runs(ax, demo: dict, domain: str) -> list[float]:
    """Each run's curve and the method's step-0 mask; returns the losses drawn (the zoom's range)."""
    styles, shown = curve_styles(demo), []
    for run, (color, dash) in styles.items():
        xs, ys = curve_points(demo, domain, run)
        if xs:
            shown += ys
            ax.plot(xs, ys, dash, color=color, label=demo["curve_names"][run], lw=1.6)
    zero = step0_point(demo, domain)
    if zero is not None:
        shown.append(zero[1])
        color = styles[demo["roles"]["method"]][0]
        ax.plot([zero[0]], [zero[1]], "v", color=color, ms=7, label=f"{_step0_label(demo)} (before training)")
    return shown


def _zoom(ax, demo: dict, domain: str, shown: list[float]) -> None:
    """Zoom on the fine-tuned models; the backbone line is labelled when it lies above the view."""
    lower = demo["roles"].get("lower_bound")
    refs = reference_losses(demo, domain)
    low = min(shown + [v for m, v in refs.items() if m != lower])
    high = max(y for y in shown[len(shown) // 4 :]) if shown else low
    pad = 0.08 * (high - low or 1.0)
    ax.set_ylim(low - pad, high + 3 * pad)
    if lower in refs and refs[lower] > high + 3 * pad:
        ax.annotate(
            f"{demo['method_short'][lower]}: {refs[lower]:.2f} (above)",
            xy=(0.02, 0.97),
            xycoords="axes fraction",
            va="top",
            fontsize=8,
            color=reference_colors(demo)[lower],
        )


def _static_domain(ax, demo: dict, domain: str) -> None:
    shown = _plot_runs(ax, demo, domain)
    references = reference_colors(demo)
    for ref, loss in reference_losses(demo, domain).items():
        ax.axhline(loss, color=references[ref], lw=1, ls="-.", label=demo["method_names"][ref])
    _zoom(ax, demo, domain, shown)
    best = demo["curves"][domain][demo["roles"]["upper_bound"]]["best_step"]
    if best:
        ax.axvline(best, color="grey", lw=0.8, ls=":")
    ax.set_title(f"{domain}")
    ax.set_xlabel("optimizer step")


def _static(demo: dict, base: str) -> list[str]:
    fig, axes = new_figure(ncols=len(demo["domains"]), width=4.4, height=3.4, squeeze=False)
    for k, domain in enumerate(demo["domains"]):
        _static_domain(axes[0][k], demo, domain)
    axes[0][0].set_ylabel("validation loss (nats/token)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.12), fontsize=8)
    fig.suptitle("Validation loss during training (dotted line: best FFT checkpoint)", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, base)


def _web_step0(web, demo: dict, domain: str, col: int) -> None:
    import plotly.graph_objects as go

    zero = step0_point(demo, domain)
    if zero is None:
        return
    web.add_trace(
        go.Scatter(
            x=[zero[0]],
            y=[zero[1]],
            mode="markers",
            name=_step0_label(demo),
            marker={"symbol": "triangle-down", "size": 10, "color": curve_styles(demo)[demo["roles"]["method"]][0]},
            legendgroup="step0",
            showlegend=col == 1,
            hovertemplate="step-0 mask<br>loss %{y:.4f}",
        ),
        1,
        col,
    )


def _web_domain(web, demo: dict, domain: str, col: int) -> None:
    """One domain's curves, step-0 mask and reference lines in subplot column `col` (legend from the first)."""
    import plotly.graph_objects as go

    for run, (color, _) in curve_styles(demo).items():
        xs, ys = curve_points(demo, domain, run)
        if xs:
            web.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    name=demo["curve_names"][run],
                    line={"color": color},
                    legendgroup=run,
                    showlegend=col == 1,
                    hovertemplate="step %{x}<br>loss %{y:.4f}",
                ),
                1,
                col,
            )
    _web_step0(web, demo, domain, col)
    references = reference_colors(demo)
    for ref, loss in reference_losses(demo, domain).items():
        web.add_hline(
            y=loss,
            line={"color": references[ref], "dash": "dashdot"},
            row=1,
            col=col,
            annotation_text=demo["method_names"][ref],
            annotation_font_size=9,
        )


def _interactive(demo: dict, path: str) -> str:
    from plotly.subplots import make_subplots

    web = make_subplots(rows=1, cols=len(demo["domains"]), subplot_titles=demo["domains"])
    for k, domain in enumerate(demo["domains"]):
        _web_domain(web, demo, domain, k + 1)
    web.update_layout(
        title="Validation loss during training",
        xaxis_title="optimizer step",
        yaxis_title="validation loss (nats/token)",
        height=450,
    )
    return save_html(web, path)


def render(result_dir) -> list[str]:
    """Draw the training curves of RESULT_DIR/demo.json into RESULT_DIR/figures; returns the written paths."""
    demo = read_result(result_dir, "demo")
    base = os.path.join(result_dir, "figures", "training_curves")
    os.makedirs(os.path.dirname(base), exist_ok=True)
    return _static(demo, base) + [_interactive(demo, base + ".html")]

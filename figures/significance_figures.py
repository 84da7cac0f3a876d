"""The forest plot of `mftlab compare-evals --out` and of the report: each difference with its 95% CI.

One panel per metric (exact match in points, loss in nats/token); one row per comparison, a
dashed line at 0. A filled marker is significant at 5% (after Holm's adjustment where there are
several comparisons), a hollow one is not. Written as PNG, PDF and self-contained HTML.
"""

from __future__ import annotations

from mftlab.figures.style import PALETTE, new_figure, out_base, save_figure, save_html
from mftlab.files.results import read_result
from mftlab.significance.result import SCALE

RESULT = "significance"  # the kind of result drawn here (see mftlab.files.results)
NAME = "forest_plot"
AXIS = {"exact_match": "difference in exact match (points)", "loss": "difference in test loss (nats/token)"}


def _label(c: dict) -> str:
    return f"{c['group'] + ': ' if c['group'] else ''}{c['b']} - {c['a']}"


def _panels(result: dict) -> dict[str, list[dict]]:
    panels: dict[str, list[dict]] = {}
    for c in result["comparisons"]:
        panels.setdefault(c["metric"], []).append(c)
    return panels


def _colours(result: dict) -> dict[str, str]:
    pairs = list(dict.fromkeys(f"{c['b']} - {c['a']}" for c in result["comparisons"]))
    return {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(pairs)}


def _static(result: dict, path: str) -> list[str]:
    panels, colours = _panels(result), _colours(result)
    rows = max(len(v) for v in panels.values())
    fig, axes = new_figure(ncols=len(panels), width=4.6, height=0.9 + 0.45 * rows, squeeze=False)
    first_labels = None
    for ax, (metric, comparisons) in zip(axes[0], panels.items()):
        scale = SCALE[metric]
        for y, c in enumerate(reversed(comparisons)):
            colour = colours[f"{c['b']} - {c['a']}"]
            ax.plot([c["ci_low"] * scale, c["ci_high"] * scale], [y, y], color=colour, lw=2)
            ax.plot(
                [c["difference"] * scale],
                [y],
                "o",
                color=colour,
                markerfacecolor=colour if c["significant"] else "white",
                markersize=7,
            )
        ax.axvline(0.0, color="black", lw=0.8, ls="--")
        labels = [_label(c) for c in reversed(comparisons)]
        ax.set_yticks(range(len(comparisons)))
        ax.set_yticklabels(labels if labels != first_labels else [])  # the same rows: named once, on the left
        first_labels = first_labels or labels
        ax.set_xlabel(AXIS[metric])
        ax.grid(axis="y", visible=False)
    adjusted = " (Holm-adjusted)" if result.get("correction") == "holm" else ""
    fig.suptitle(f"Paired differences with 95% CIs; filled = significant at 5%{adjusted}", fontsize=10)
    return save_figure(fig, path)


def _interactive(result: dict, path: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels, colours = _panels(result), _colours(result)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[AXIS[m] for m in panels], horizontal_spacing=0.25)
    for col, (metric, comparisons) in enumerate(panels.items(), 1):
        scale = SCALE[metric]
        for c in comparisons:
            colour = colours[f"{c['b']} - {c['a']}"]
            text = (
                f"{_label(c)}<br>difference {c['difference'] * scale:+.3g} [{c['ci_low'] * scale:+.3g}, "
                f"{c['ci_high'] * scale:+.3g}]<br>p = {c['p_value']:.3g}, adjusted {c['p_adjusted']:.3g}"
            )
            fig.add_trace(
                go.Scatter(
                    x=[c["difference"] * scale],
                    y=[_label(c)],
                    error_x={
                        "type": "data",
                        "symmetric": False,
                        "array": [(c["ci_high"] - c["difference"]) * scale],
                        "arrayminus": [(c["difference"] - c["ci_low"]) * scale],
                    },
                    mode="markers",
                    marker={"color": colour if c["significant"] else "white", "line": {"color": colour, "width": 2}},
                    hovertext=text,
                    hoverinfo="text",
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        fig.add_vline(x=0.0, line_dash="dash", line_color="black", row=1, col=col)
    fig.update_layout(title="Paired differences with 95% CIs (filled = significant at 5%)")
    return save_html(fig, path)


def render(result_dir) -> list[str]:
    """Draw the forest plot of the significance result in `result_dir`; returns the written paths."""
    result = read_result(result_dir, RESULT)
    if not result["comparisons"]:
        return []
    base = out_base(result_dir, NAME)
    return _static(result, base) + [_interactive(result, base + ".html")]

"""Figures of `mftlab compare-masks --reference`: "MFT mask vs pruning criteria".

One heatmap per compared mask: lift over chance of the overlap of masked sets per layer (rows)
and projection (columns), each cell annotated with the lift and the share of the reference's
masked weights that mask also masks; a last panel compares those shares overall with chance.
`criteria_sentence` says the same in one sentence (used by the demo report). Pure functions of
reference_overlap.json.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from mftlab.figures.heatmap_parts import label_cells, set_log_ticks
from mftlab.figures.style import (
    DIVERGING_CMAP,
    PALETTE,
    RC,
    lift_norm,
    nan_to_none,
    new_figure,
    out_base,
    save_figure,
    save_html,
)
from mftlab.files.results import read_result

RESULT = "reference_overlap"  # the kind of result drawn here (see mftlab.files.results)
JUST_PRUNING = 0.5  # a criterion masking half of MFT's masked set would make MFT "largely pruning"


def _grid(result: dict, label: str, metric: str) -> np.ndarray:
    layers, projections = result["layers"], result["projections"]
    grid = np.full((len(layers), len(projections)), np.nan)
    for r in result["rows"]:
        if r["level"] == "tensor" and r["mask"] == label and r.get("layer") is not None and r[metric] is not None:
            grid[layers.index(str(r["layer"])), projections.index(r["projection"])] = r[metric]
    return grid


def _overall(result: dict, label: str) -> dict:
    return next(r for r in result["rows"] if r["level"] == "overall" and r["mask"] == label)


def _reference_name(result: dict) -> str:
    return "MFT" if result.get("reference_method") == "mft" else result["reference"]


def _times(lift: float | None, word: str = "") -> str:
    if lift is None:
        return "n/a"
    return "not at all" if lift == 0 else f"{lift:.2f}x{word}"


def criteria_sentence(result: dict) -> str:
    """One sentence, from the numbers, on whether the reference mask is just a pruning criterion's mask.

    E.g. "MFT's masked set overlaps Wanda's 1.31x chance (layer 2: 1.52x, layer 3: not at all), ...".
    The verdict: "largely masks what X prunes" when one criterion masks at least half of the
    reference's masked set (JUST_PRUNING), "leans towards X" when a criterion's lift is at least 1.5,
    else "is not just pruning".
    """
    ref = _reference_name(result)
    criteria = [lab for lab, m in zip(result["labels"], result["methods"]) if m != "random"]
    controls = [lab for lab, m in zip(result["labels"], result["methods"]) if m == "random"]
    parts = []
    for i, label in enumerate(criteria):
        by_layer = [
            next(r for r in result["rows"] if r["level"] == "layer" and r["group"] == layer and r["mask"] == label)[
                "lift"
            ]
            for layer in result["layers"]
        ]
        detail = ", ".join(f"layer {layer}: {_times(v)}" for layer, v in zip(result["layers"], by_layer))
        overall = _times(_overall(result, label)["lift"], " chance" if i == 0 else "")
        parts.append(f"{label}'s {overall}" + (f" ({detail})" if len(by_layer) > 1 else ""))
    parts += [f"the {c} mask's {_times(_overall(result, c)['lift'])}" for c in controls]
    text = f"{ref}'s masked set overlaps " + ", ".join(parts)
    if criteria:
        share, label = max((_overall(result, lab)["fraction_of_reference"] or 0.0, lab) for lab in criteria)
        chance = _overall(result, label)["chance_fraction"] or 0.0
        top_lift, top = max((_overall(result, lab)["lift"] or 0.0, lab) for lab in criteria)
        if share >= JUST_PRUNING:
            verdict = f"so {ref} largely masks what {label} prunes"
        elif top_lift >= 1.5:
            verdict = f"so {ref} leans towards what {top} prunes but is not just pruning"
        else:
            verdict = f"so {ref} is not just pruning"
        text += (
            f"; at most {share:.0%} of {ref}'s masked weights are masked by a criterion too ({label}; chance "
            f"{chance:.0%}), {verdict}"
        )
    rhos = [
        (lab, _overall(result, lab)["spearman"]) for lab in criteria if _overall(result, lab)["spearman"] is not None
    ]
    if rhos:
        text += f" (Spearman of {ref}'s scores with " + ", ".join(f"{lab} {rho:+.2f}" for lab, rho in rhos) + ")"
    return text + "."


def _annotate(ax, lift: np.ndarray, share: np.ndarray) -> None:
    if lift.size > 120:
        return
    label_cells(ax, lift, lambda i, j, v: f"{v:.2f}x\n{100 * share[i, j]:.0f}%", fontsize=7, pad=0.1, alpha=0.6)


def _grids(result: dict) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(lift, share of the reference's masked set) per compared mask, as layer x projection grids."""
    labels = result["labels"]
    lifts = {lab: _grid(result, lab, "lift") for lab in labels}
    shares = {lab: _grid(result, lab, "fraction_of_reference") for lab in labels}
    return lifts, shares


def _lift_panel(ax, result: dict, label: str, *, lift: np.ndarray, share: np.ndarray, norm):
    """One compared mask's lift heatmap, annotated with the shares; returns the image (for the colour bar)."""
    layers, projections = result["layers"], result["projections"]
    image = ax.imshow(
        np.ma.masked_invalid(lift), cmap=DIVERGING_CMAP, norm=norm, aspect="auto", interpolation="nearest"
    )
    ax.grid(False)
    ax.set_xticks(range(len(projections)), projections, rotation=30 if max(map(len, projections)) > 5 else 0)
    step = max(1, len(layers) // 24)
    ax.set_yticks(range(0, len(layers), step), layers[::step])
    ax.set_xlabel("projection")
    ax.set_ylabel("layer")
    row = _overall(result, label)
    rho = f", Spearman {row['spearman']:+.2f}" if row["spearman"] is not None else ""
    ref = _reference_name(result)
    ax.set_title(f"{ref} vs {label}: lift {_times(row['lift']).replace(' chance', '')} overall{rho}", fontsize=9)
    _annotate(ax, lift, share)
    return image


def _share_bars(ax, result: dict) -> None:
    """Overall share of the reference's masked weights that each mask also masks, against chance."""
    labels, ref = result["labels"], _reference_name(result)
    share = [100 * (_overall(result, lab)["fraction_of_reference"] or 0) for lab in labels]
    chance = [100 * (_overall(result, lab)["chance_fraction"] or 0) for lab in labels]
    x = np.arange(len(labels))
    ax.bar(x, share, width=0.5, color=[PALETTE[i % len(PALETTE)] for i in range(len(labels))])
    ax.scatter(x, chance, marker="_", s=900, linewidths=2, color="black", zorder=3, label="chance (independent masks)")
    ax.set_xticks(x, labels)
    ax.set_ylabel(f"% of {ref}'s masked")
    ax.set_title(f"Share of {ref}'s masked weights that each mask also masks (overall)", fontsize=9)
    ax.set_ylim(0, max(share + chance + [1.0]) * 1.3)
    for i, v in enumerate(share):
        ax.annotate(f"{v:.1f}%", (i + 0.27, v), ha="left", va="center", fontsize=7)
    ax.legend(fontsize=7, loc="upper right")


def _heatmaps_static(result: dict, base: str) -> list[str]:
    labels, layers, projections = result["labels"], result["layers"], result["projections"]
    ref = _reference_name(result)
    lifts, shares = _grids(result)
    norm = lift_norm(np.concatenate([g.ravel() for g in lifts.values()]))
    ncols = min(2, len(labels))
    nrows = -(-len(labels) // ncols)
    fig, axes = new_figure(
        ncols=ncols,
        nrows=nrows + 1,
        width=1.4 + 0.62 * len(projections),
        height=1.2 + 0.4 * len(layers),
        squeeze=False,
        layout="constrained",
    )
    for extra in axes.ravel()[len(labels) :]:
        extra.remove()
    image = None
    for ax, label in zip(axes.ravel(), labels):
        image = _lift_panel(ax, result, label, lift=lifts[label], share=shares[label], norm=norm)
    bar = fig.colorbar(
        image, ax=[a for a in axes[:nrows].ravel()[: len(labels)]], shrink=0.9, label="lift (log; 1 = chance)"
    )
    set_log_ticks(bar, norm, (0.25, 0.5, 0.8, 1, 1.25, 2, 4, 8, 16))
    with plt.rc_context(RC):  # the house style, as new_figure gives the heatmap panels
        bars = fig.add_subplot(axes[0, 0].get_gridspec()[nrows, :])
    _share_bars(bars, result)
    fig.suptitle(
        f"{ref} mask vs pruning criteria: lift (colour) and share of {ref}'s masked set (text) "
        "per layer and projection",
        fontsize=10,
    )
    return save_figure(fig, base)


def _heatmaps_interactive(result: dict, path: str) -> str:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels, layers, projections = result["labels"], result["layers"], result["projections"]
    ref = _reference_name(result)
    lifts, shares = _grids(result)
    pfig = make_subplots(rows=1, cols=len(labels), subplot_titles=[f"{ref} vs {lab}" for lab in labels])
    for k, label in enumerate(labels):
        pfig.add_trace(
            go.Heatmap(
                z=nan_to_none(lifts[label]),
                x=projections,
                y=layers,
                customdata=nan_to_none(100 * shares[label]),
                colorscale="RdBu_r",
                zmid=1,
                showscale=k == 0,
                colorbar={"title": "lift"},
                hovertemplate=f"{label}, layer %{{y}}, %{{x}}: lift %{{z:.3f}}, %{{customdata:.1f}}% of {ref}'s masked"
                "<extra></extra>",
            ),
            row=1,
            col=k + 1,
        )
    pfig.update_yaxes(type="category", autorange="reversed", title_text="layer")
    pfig.update_xaxes(title_text="projection")
    pfig.update_layout(title=f"{ref} mask vs pruning criteria: lift of the overlap of masked sets")
    return save_html(pfig, path)


def heatmaps(result: dict, result_dir) -> list[str]:
    """Lift (colour) and share of the reference's masked set (text) per layer and projection."""
    if not result["layers"] or not result["projections"]:
        return []
    base = out_base(result_dir, "criteria_overlap")
    return _heatmaps_static(result, base) + [_heatmaps_interactive(result, base + ".html")]


def render(result_dir) -> list[str]:
    """Redraw the figures of RESULT_DIR/reference_overlap.json; returns the written paths."""
    return heatmaps(read_result(result_dir, RESULT), result_dir)

"""The demo's report: tables like the paper's Tables 1 and 5, every figure with one sentence on
what it shows, and a plain statement of whether MFT beat the FFT upper bound on each domain.

Pure function of `demo.json` and the result folders next to it: writes `report.md` and
`index.html` (self-contained page: tables inline, static figures as images, links to the
interactive HTML figures), after redrawing every figure of the demo's results.
"""

from __future__ import annotations

import html
import os
import statistics

from mftlab.figures import (
    benchmark_table,
    criteria_figures,
    curves_figures,
    dynamics_figures,
    landscape_figures,
    overlap_figures,
    runtime_section,
    significance_figures,
    significance_section,
    stats_figures,
)
from mftlab.files.atomic import write_text_atomic
from mftlab.files.results import read_result

RESULT = "demo"
OWNS_SUBFOLDERS = True  # `mftlab plot` redraws the demo's sub-results through this module only

CAPTIONS = {
    "forest_plot": (
        "MFT minus FFT (and minus continued FFT) on each domain's test set, with 95% confidence intervals "
        "paired over the test examples; a filled marker is significant at 5% after Holm's adjustment over "
        "the domains. Left: exact match in points (above 0: MFT better); right: loss (below 0: MFT better)."
    ),
    "training_curves": (
        "Validation loss against optimizer steps (the paper's Figure 2): FFT from the backbone, continued "
        "FFT and MFT (the variant chosen on validation) from the best FFT checkpoint, LoRA, with the "
        "backbone and the random (mean of the draws) and magnitude masks as reference lines. The "
        "triangle is MFT's step-0 mask, evaluated before any training: the damage the initial prune "
        "does, which the MFT run then has to repair."
    ),
    "landscape": "Train and test loss on the plane through the FFT upper bound (star), continued FFT (square) and MFT "
    "(triangle), as in the paper's Figure 6: filled contours on log-spaced levels and 3-D surfaces on one "
    "colour scale.",
    "heatmap": "Masked fraction per layer and projection of the MFT mask.",
    "concentration": "How concentrated the masked weights are over output rows and input columns (Gini, maxima).",
    "magnitude": "|w| of masked versus kept weights, and (with the backbone) how much fine-tuning had changed them.",
    "flips": "Mask dynamics: weights whose mask bit flipped between training snapshots, per layer.",
    "hamming": "Mask dynamics: Hamming distance of each snapshot to the first and to the final mask.",
    "criteria_overlap": (
        "MFT mask vs pruning criteria: per layer and projection, the lift of the overlap of MFT's masked "
        "set with the Wanda, SNIP, magnitude and random masks' (colour; 1 = chance) and the share of "
        "MFT's masked weights each one masks too (text); below, the same share overall against chance."
    ),
    "overlap": "Overlap of the three domain masks: Jaccard and lift over independent masks, per layer, and how many "
    "weights are masked by exactly k of the masks. The MFT runs share the seed, so runs with the same "
    "initialisation start from the same step-0 mask (the same random scores, or each domain's magnitude "
    "mask): lift above 1 partly reflects that common start.",
}

PRUNING_NOTE = (
    "The first seed's MFT mask against masks that pruning criteria make at the same ratio and layers "
    "(Wanda, SNIP: calibrated on the domain's training data; magnitude; random as the control): lift = "
    "weights masked by both / the number expected by chance (1 = chance); Spearman between MFT's scores "
    "and each criterion's."
)

TABLE_NOTES = {
    "in_domain": "Each method's exact-match accuracy on the test set of the domain it was trained on (mean ± std "
    "over seeds when there are several; the random mask: over its draws). MFT is the variant chosen on "
    "validation loss (see the appendix). Exact match is scored by teacher forcing: every answer ends "
    "with end-of-text, so an answer counts as right exactly when greedy decoding would reproduce it.",
    "loss": "Token-weighted cross-entropy over the answer tokens of the same test sets.",
    "cross": "Each domain's models scored on every domain's test set: how much a method's gains (or losses) "
    "carry over to the other domains, as in the paper's Table 5.",
}


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _cell(values: list[float], percent: bool = True) -> str:
    mean, std = _mean_std(values)
    scale = 100.0 if percent else 1.0
    if len(values) > 1:
        return f"{mean * scale:.1f} ± {std * scale:.1f}" if percent else f"{mean:.3f} ± {std:.3f}"
    return f"{mean * scale:.1f}" if percent else f"{mean:.3f}"


def score_values(
    demo: dict, train_domain: str, method: str, test_domain: str, metric: str = "exact_match"
) -> list[float]:
    """One value per seed, or per seed and draw for a method drawn several times (the random mask)."""
    values = []
    for s in demo["seeds"]:
        result = demo["scores"][str(s)][train_domain].get(method)
        if result is not None:
            values += [r["test"][test_domain][metric] for r in result.get("draws", [result])]
    return values


# -- MFT's recipe (chosen on validation) and the random draws -------------------------------------
VARIANTS_NOTE = (
    "Every MFT variant (score initialisation x score learning rate) trained from the same FFT "
    "checkpoint on the same data; each contributes its best-on-validation checkpoint. The variant "
    'with the lowest validation loss is "MFT" in Tables 1 and 5. Test numbers are listed for '
    "completeness and were not used to choose. FFT's checkpoint and continued FFT's length were "
    "chosen on the same validation sets, so every method had the same chance."
)


def _variant_label(v: dict) -> str:
    return f"{v['score_init']} init, score-lr {v['score_lr']:g}"


def variants_table(demo: dict) -> list[list[str]]:
    """Appendix: every MFT variant's validation and in-domain test numbers; the chosen one marked."""
    several = len(demo["seeds"]) > 1
    rows = [
        ["Domain"]
        + (["Seed"] if several else [])
        + ["MFT variant", "step-0 val. loss", "val. loss", "test loss", "test exact match (%)", "chosen"]
    ]
    for s in demo["seeds"]:
        for d in demo["domains"]:
            entry = demo["mft_variants"][str(s)][d]
            for name, v in entry["variants"].items():
                step0 = "n/a" if v.get("step0_loss") is None else f"{v['step0_loss']:.4f}"
                rows.append(
                    [d]
                    + ([str(s)] if several else [])
                    + [
                        _variant_label(v),
                        step0,
                        f"{v['validation_loss']:.4f}",
                        f"{v['test'][d]['loss']:.4f}",
                        f"{100 * v['test'][d]['exact_match']:.1f}",
                        "**chosen**" if name == entry["selected"] else "",
                    ]
                )
    return rows


def chosen_lines(demo: dict) -> list[str]:
    """Which variant is "MFT" per domain (and seed)."""
    lines = []
    for d in demo["domains"]:
        picks = [
            _variant_label(demo["mft_variants"][str(s)][d]["variants"][demo["mft_variants"][str(s)][d]["selected"]])
            for s in demo["seeds"]
        ]
        lines.append(
            f"{d}: {'; '.join(f'seed {s}: {p}' for s, p in zip(demo['seeds'], picks)) if len(picks) > 1 else picks[0]}"
        )
    return lines


def random_spread(demo: dict) -> str:
    """How far apart the random-mask draws land (in-domain exact match), one sentence ("" without random masks)."""
    drawn = demo["roles"].get("drawn")
    if drawn not in demo["methods"]:
        return ""
    parts, draws = [], 1
    for d in demo["domains"]:
        values = score_values(demo, d, drawn, d)
        draws = max(draws, len(values))
        mean, std = _mean_std(values)
        parts.append(f"{d} {100 * min(values):.1f}-{100 * max(values):.1f}% (std {100 * std:.1f} points)")
    if draws < 2:
        return "The random mask was drawn once per domain and seed: its spread over draws is not measured."
    seeds = len(demo["seeds"])
    count = (
        f"{draws // seeds} times per domain and seed ({draws} draws per domain)"
        if seeds > 1
        else f"{draws} times per domain"
    )
    return (
        f"Random masks were drawn {count}; their in-domain exact match ranges over {', '.join(parts)}: "
        "a single random draw is a noisy baseline."
    )


def in_domain_table(demo: dict, metric: str = "exact_match") -> list[list[str]]:
    """Rows: methods; columns: domains; cell: in-domain test score (mean ± std over seeds)."""
    rows = [["Method"] + demo["domains"]]
    for m in demo["methods"]:
        rows.append(
            [demo["method_names"][m]]
            + [_cell(score_values(demo, d, m, d, metric), metric == "exact_match") for d in demo["domains"]]
        )
    return rows


def cross_domain_tables(demo: dict) -> dict[str, list[list[str]]]:
    """For each training domain: rows methods, columns test domains (exact match %)."""
    tables = {}
    for train in demo["domains"]:
        rows = [["Method"] + [f"{d} test" for d in demo["domains"]]]
        for m in demo["methods"]:
            rows.append([demo["method_names"][m]] + [_cell(score_values(demo, train, m, d)) for d in demo["domains"]])
        tables[train] = rows
    return tables


def verdicts(demo: dict, significance: dict | None = None) -> list[str]:
    """One plain sentence per domain: did the method (MFT) beat the upper bound (FFT), by how much, and
    (with the protocol's `significance` result) is the difference real: its 95% CI and paired test."""
    lines = []
    method, upper = demo["roles"]["method"], demo["roles"]["upper_bound"]
    name, upper_name = demo["method_short"][method], demo["method_short"][upper]
    for d in demo["domains"]:
        diffs = [m - f for m, f in zip(score_values(demo, d, method, d), score_values(demo, d, upper, d))]
        mean, std = _mean_std(diffs)
        spread = f" (± {100 * std:.1f} over {len(diffs)} seeds)" if len(diffs) > 1 else " (one seed)"
        fft_mean = 100 * _mean_std(score_values(demo, d, upper, d))[0]
        mft_mean = 100 * _mean_std(score_values(demo, d, method, d))[0]
        tested = significance_section.verdict_clause(significance, demo, d)
        if tested is not None and not tested[0]:
            word = "did not significantly differ from"
        elif mean > 0:
            word = "beat"
        elif mean == 0:
            word = "tied with"
        else:
            word = "did not beat"
        tail = tested[1] if tested is not None else f"{spread}."
        lines.append(
            f"**{d}**: {name} {word} the {upper_name} upper bound: {mft_mean:.1f}% vs {fft_mean:.1f}% exact match, "
            f"a difference of {100 * mean:+.1f} points{tail}"
        )
    return lines


def pruning_sentences(result_dir: str, demo: dict) -> list[str]:
    """One sentence per domain, from the numbers: is the MFT mask just a pruning criterion's mask?"""
    folders = demo["analysis"].get("criteria", {})
    return [
        f"{domain}: "
        + criteria_figures.criteria_sentence(read_result(os.path.join(result_dir, folder), criteria_figures.RESULT))
        for domain, folder in folders.items()
    ]


def _records(demo: dict) -> str:
    """ "200 training records per domain", or the count of each domain when they differ."""
    counts = demo["train_records"]
    if len(set(counts.values())) == 1:
        return f"{next(iter(counts.values()))} training records per domain"
    return "training records: " + ", ".join(f"{d} {n}" for d, n in counts.items())


def _markdown_table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(out)


def _html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _caption(path: str) -> str:
    stem = os.path.basename(path).rsplit(".", 1)[0]
    for key, text in CAPTIONS.items():
        if key in stem:
            return text
    return stem.replace("_", " ")


def _redraw(result_dir: str, demo: dict) -> list[tuple[str, str, list[str]]]:
    """Redraw every figure; returns (section title, folder, written paths) in report order."""
    sections = []
    analysis = demo["analysis"]
    if "significance" in analysis:
        folder = analysis["significance"]
        written = significance_figures.render(os.path.join(result_dir, folder))
        sections.append(("Is the gain real? Paired differences with 95% CIs", folder, written))
    sections.append(("Training curves", result_dir, curves_figures.render(result_dir)))
    for domain, folder in analysis["landscape"].items():
        sections.append(
            (f"Loss landscape: {domain}", folder, landscape_figures.render(os.path.join(result_dir, folder)))
        )
    for domain, folder in analysis["stats"].items():
        path = os.path.join(result_dir, folder)
        sections.append(
            (
                f"MFT mask of {domain}: statistics and dynamics",
                folder,
                stats_figures.render(path) + dynamics_figures.render(path),
            )
        )
    for domain, folder in analysis.get("criteria", {}).items():
        sections.append(
            (
                f"MFT mask vs pruning criteria: {domain}",
                folder,
                criteria_figures.render(os.path.join(result_dir, folder)),
            )
        )
    if "overlap" in analysis:  # only with two or more domains
        sections.append(
            (
                "Overlap of the domain masks",
                analysis["overlap"],
                overlap_figures.render(os.path.join(result_dir, analysis["overlap"])),
            )
        )
    return sections


class _Page:
    """The report written twice as it is built: Markdown lines and the HTML page's parts."""

    def __init__(self):
        self.md: list[str] = []
        self.html: list[str] = []

    def section(self, title: str, note: str | None = None) -> None:
        self.md += [f"## {title}", ""] + ([note, ""] if note is not None else [])
        self.html.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{html.escape(note)}</p>" if note is not None else ""))

    def bullets(self, items: list[str]) -> None:
        self.md += [f"- {item}" for item in items]
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i).replace('**', '')}</li>" for i in items) + "</ul>")

    def table(self, rows: list[list[str]], after: str | None = None) -> None:
        self.md += [_markdown_table(rows), ""] + ([after, ""] if after is not None else [])
        self.html.append(_html_table([[c.replace("**", "") for c in r] for r in rows]))
        if after is not None:
            self.html.append(f"<p>{html.escape(after)}</p>")

    def figure(self, png: str, result_dir: str) -> None:
        rel, caption = os.path.relpath(png, result_dir), _caption(png)
        interactive = png[:-4] + ".html"
        link = os.path.relpath(interactive, result_dir) if os.path.exists(interactive) else None
        self.md += [f"![{caption}]({rel})", "", caption + (f" [Interactive version]({link})." if link else ""), ""]
        self.html.append(
            f'<figure><img src="{html.escape(rel)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}"
            + (f' <a href="{html.escape(link)}">Interactive version</a>' if link else "")
            + "</figcaption></figure>"
        )


def _intro(demo: dict) -> str:
    cfg = demo["config"]
    intro = (
        f"{cfg['title']}, {len(demo['seeds'])} seed(s) {demo['seeds']}, MFT on layers {cfg['layers']} at mask ratio "
        f"{cfg['mask_ratio']}; {cfg['data_note'] + ': ' if cfg['data_note'] else ''}{_records(demo)}; wall time "
        f"{demo['wall_seconds']} s (training and analysis; figures not included)."
    )
    if "lora" in cfg["methods"] and not demo.get("lora"):
        intro += " LoRA was skipped: install the `lora` extra (peft) to include it."
    if demo.get("command") == "demo" and "benchmarks" not in demo:
        intro += " The lm-eval benchmark table was skipped: install the `eval` extra (lm-eval) to include it."
    if "mft_variants" in demo:
        intro += (
            f" MFT's recipe was chosen on validation loss among {len(cfg['mft_inits']) * len(cfg['mft_score_lrs'])} "
            f"variants (score init {', '.join(cfg['mft_inits'])} x score-lr "
            f"{', '.join(f'{lr:g}' for lr in cfg['mft_score_lrs'])}); chosen: " + "; ".join(chosen_lines(demo)) + "."
        )
    return intro


def _verdict_sections(page: _Page, result_dir: str, demo: dict, significance: dict | None) -> None:
    """Did MFT beat FFT (each verdict from the paired tests when there are any), and is it just pruning?"""
    page.section("Did MFT beat full fine-tuning?")
    page.bullets(verdicts(demo, significance))
    if significance is not None:
        page.md += ["", significance_section.NOTE]
        page.html.append(f"<p>{html.escape(significance_section.NOTE)}</p>")
    pruning = pruning_sentences(result_dir, demo)
    if pruning:
        page.md += [""]
        page.section("Is MFT just pruning?", PRUNING_NOTE)
        page.bullets(pruning)


def _tables(page: _Page, demo: dict, significance: dict | None) -> None:
    """Tables 1 (with the paired differences), the loss table, Table 5 and the lm-eval table."""
    rows_note = f" {significance_section.ROWS_NOTE}" if significance else ""
    page.md += [""]
    page.section("Table 1: in-domain test exact match (%)", TABLE_NOTES["in_domain"] + rows_note)
    exact = in_domain_table(demo) + significance_section.difference_rows(significance, demo, "exact_match")
    page.table(exact, after=random_spread(demo))
    page.section("In-domain test loss (nats/token)", TABLE_NOTES["loss"] + rows_note)
    page.table(in_domain_table(demo, "loss") + significance_section.difference_rows(significance, demo, "loss"))
    page.section("Table 5: cross-domain exact match (%)", TABLE_NOTES["cross"])
    for train, rows in cross_domain_tables(demo).items():
        page.md += [f"Trained on **{train}**, scored on every domain's test set.", ""]
        page.html.append(f"<h3>Trained on {html.escape(train)}</h3>")
        page.table(rows)
    if "benchmarks" in demo:
        page.section("Table 1 on benchmarks (lm-eval, %)", benchmark_table.NOTE)
        page.table(benchmark_table.table(demo))
        page.bullets(benchmark_table.mft_vs_fft(demo))
        page.md += [""]


def _appendices(page: _Page, result_dir: str, demo: dict) -> None:
    """MFT's variants (chosen on validation) and where every step ran."""
    if "mft_variants" in demo:
        page.section("Appendix: MFT variants, chosen on validation", VARIANTS_NOTE)
        page.table(variants_table(demo))
    ran = runtime_section.rows(result_dir)
    settings = runtime_section.settings_line(demo["config"])
    if settings is not None and len(ran) > 1:
        card = runtime_section.plan_card(result_dir)
        note = runtime_section.NOTE + (f" Planned for: {card}; see plan.md." if card else "")
        page.md += ["## Appendix: where it ran", "", settings, "", note, ""]
        page.html.append(f"<h2>Appendix: where it ran</h2><p>{html.escape(settings)}</p><p>{html.escape(note)}</p>")
        page.table(ran)


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1.5em 0}"
    "figcaption{font-size:0.9em;color:#444}"
)


def render(result_dir) -> list[str]:
    """Redraw every figure of the demo / protocol folder and write report.md and index.html; returns the paths."""
    result_dir = os.fspath(result_dir)
    demo = read_result(result_dir, RESULT)
    sections = _redraw(result_dir, demo)
    title = f"mftlab {demo.get('command', 'demo')} report"
    intro = _intro(demo)
    significance = significance_section.load(result_dir, demo)
    page = _Page()
    page.md += [f"# {title}", "", intro, ""]
    page.html.append(f"<h1>{title}</h1><p>{html.escape(intro)}</p>")
    _verdict_sections(page, result_dir, demo, significance)
    _tables(page, demo, significance)
    for heading, _folder, written in sections:
        page.section(heading)
        for png in sorted(p for p in written if p.endswith(".png")):
            page.figure(png, result_dir)
    _appendices(page, result_dir, demo)
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title><style>{STYLE}</style>"
        f"</head><body>{''.join(page.html)}</body></html>"
    )
    write_text_atomic(os.path.join(result_dir, "report.md"), "\n".join(page.md) + "\n")
    write_text_atomic(os.path.join(result_dir, "index.html"), doc)
    written = [p for _t, _f, paths in sections for p in paths]
    return written + [os.path.join(result_dir, "report.md"), os.path.join(result_dir, "index.html")]

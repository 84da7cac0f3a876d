"""The report's answer to "is the gain real?": difference rows with 95% CIs under Tables 1 and the loss
table, the verdict clause of each domain's sentence, and the note that says how the numbers were made.

Reads the protocol's significance result (`analysis.significance` in demo.json, written by
recipes.protocol_significance). A demo.json without one (written before 0.2) gives no rows and no
clause: the report then says what it said before.
"""

from __future__ import annotations

import os

from mftlab.files.results import read_result
from mftlab.significance.result import SCALE

NOTE = (
    "Differences are paired over the test examples (every method answers the same questions): the 95% "
    "confidence interval is a paired bootstrap (BCa, 10,000 resamples); the test is the exact McNemar "
    "test for exact match and a paired permutation test for loss. With several seeds the interval and "
    "test are a two-level bootstrap (seeds, then examples), so training noise counts too. Holm's "
    "adjustment runs over the domains; significant means adjusted p < 0.05. Every method's per-example "
    "results are kept (`examples-*.jsonl` in each domain's eval folder) for `mftlab compare-evals`."
)
ROWS_NOTE = (
    'The rows "B - A (95% CI)" give the paired difference and its 95% confidence interval (points for exact '
    "match, nats/token for loss); * marks a difference significant at 5% after Holm's adjustment over the domains. "
    "The loss difference is the mean over examples of each example's mean answer-token loss, so it can differ "
    "slightly from the difference of the token-weighted losses above it."
)
DIGITS = {"exact_match": 1, "loss": 3}


def load(result_dir: str, demo: dict) -> dict | None:
    """The significance result of a protocol folder, or None when it has none."""
    folder = demo.get("analysis", {}).get("significance")
    return read_result(os.path.join(result_dir, folder), "significance") if folder else None


def find(result: dict, domain: str, a: str, b: str, metric: str) -> dict | None:
    """The comparison B - A (short names) of `domain` in `metric`, if it was made."""
    for c in result["comparisons"]:
        if (c["group"], c["a"], c["b"], c["metric"]) == (domain, a, b, metric):
            return c
    return None


def interval_cell(c: dict) -> str:
    """ "+2.0 [-1.0, +5.0]" (points for exact match, nats for loss), "*" when significant."""
    scale, digits = SCALE[c["metric"]], DIGITS[c["metric"]]
    text = (
        f"{c['difference'] * scale:+.{digits}f} [{c['ci_low'] * scale:+.{digits}f}, {c['ci_high'] * scale:+.{digits}f}]"
    )
    return text + (" *" if c["significant"] else "")


def difference_rows(result: dict | None, demo: dict, metric: str) -> list[list[str]]:
    """Table rows "MFT - FFT (95% CI)": one cell per domain (no rows without a significance result)."""
    if result is None:
        return []
    pairs = dict.fromkeys((c["a"], c["b"]) for c in result["comparisons"])
    rows = []
    for a, b in pairs:
        cells = [find(result, d, a, b, metric) for d in demo["domains"]]
        if all(cells):
            rows.append([f"{b} - {a} (95% CI)"] + [interval_cell(c) for c in cells])
    return rows


def verdict_clause(result: dict | None, demo: dict, domain: str) -> tuple[bool, str] | None:
    """(significant, the sentence's tail) for the method against the upper bound in exact match."""
    if result is None:
        return None
    short = demo["method_short"]
    c = find(result, domain, short[demo["roles"]["upper_bound"]], short[demo["roles"]["method"]], "exact_match")
    if c is None:
        return None
    how = (
        f"over {c['seeds']} seeds and {c['examples']} test examples each, two-level bootstrap p = {c['p_value']:.3g}"
        if c["seeds"] > 1
        else f"over {c['examples']} test examples, exact McNemar p = {c['p_value']:.3g}"
    )
    family = sum(1 for x in result["comparisons"] if x["family"] == c["family"])
    holm = f", Holm over {family} domains: {c['p_adjusted']:.3g}" if family > 1 else ""
    ci = f"95% CI {100 * c['ci_low']:+.1f} to {100 * c['ci_high']:+.1f}"
    word = "significant at 5% (Holm over domains)" if family > 1 else "significant at 5%"
    verdict = word if c["significant"] else "not significant"
    return c["significant"], f" ({ci} {how}{holm}): {verdict}."

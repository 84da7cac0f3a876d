"""Is MFT's difference from FFT (and from continued FFT) real? The protocol's paired tests.

For every domain, MFT (the variant chosen on validation) against the upper bound and against
continued FFT, on the domain's own test set, in exact match and in loss: paired over the test
examples from the per-example files scoring wrote (`examples-NAME-DOMAIN.jsonl`), over seeds too
when there are several (a two-level bootstrap). Holm's adjustment runs over the domains of each
comparison and metric. Written as a significance result (`analysis/significance`), which the report
and `mftlab plot` read.
"""

from __future__ import annotations

import os

from mftlab.recipes.methods import ROLES, SHORT
from mftlab.recipes.steps import per_example_file
from mftlab.significance.per_example import paired_values, read_per_example
from mftlab.significance.result import Entry, compare

METRICS = ("exact_match", "loss")


def comparisons(methods: list[str]) -> list[tuple[str, str]]:
    """(A, B) method ids, each compared as B - A: the method against the upper bound and continued FFT."""
    method = ROLES["method"]
    return [(a, method) for a in (ROLES["upper_bound"], "continued_fft") if a in methods and method in methods]


def _scored_name(seed_info: dict, domain: str, method: str) -> str:
    """The name `method` was scored under in the domain's eval folder (MFT: its chosen variant's)."""
    if method == ROLES["method"]:
        return f"mft-{seed_info['runs'][domain]['selected']}"
    return method


def _pairs(per_seed: dict, domain: str, a: str, b: str, metric: str) -> list:
    pairs = []
    for info in per_seed.values():
        folder = os.path.join(info["runs"][domain]["root"], "eval")
        paths = [os.path.join(folder, per_example_file(_scored_name(info, domain, m), domain)) for m in (a, b)]
        rows = [read_per_example(p) for p in paths]
        pairs.append(paired_values(rows[0], rows[1], metric, (paths[0], paths[1])))
    return pairs


def write_significance(out: str, per_seed: dict, domains: list[str], methods: list[str]) -> str | None:
    """Compute and save the protocol's paired tests under OUT/analysis/significance; its path relative to
    `out` (None when the methods hold nothing to compare)."""
    entries = [
        Entry(SHORT[a], SHORT[b], metric, _pairs(per_seed, d, a, b, metric), d, f"{SHORT[b]} - {SHORT[a]}, {metric}")
        for a, b in comparisons(methods)
        for metric in METRICS
        for d in domains
    ]
    if not entries:
        return None
    folder = os.path.join(out, "analysis", "significance")
    compare(entries).save(folder)
    return os.path.relpath(folder, out)

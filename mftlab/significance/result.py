"""Several paired comparisons as one result: each with its interval, its test, and Holm's adjustment.

    result = compare(entries)            # entries: what to compare (names, per-example values per seed)
    result.lines()                       # what `mftlab compare-evals` prints
    result.save("results/significance")  # significance.json + significance.csv; `mftlab plot` draws the forest plot

A comparison with one seed uses the paired tests of `paired.py` (BCa interval; exact McNemar for exact
match, permutation for loss); with several seeds the two-level bootstrap of `hierarchical.py`.
Comparisons that share a `family` (e.g. "MFT - FFT, exact match" over the domains) are adjusted
together with Holm's method; "significant" means the adjusted p-value is below 0.05.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from mftlab.files.results import write_result
from mftlab.significance.hierarchical import hierarchical_comparison
from mftlab.significance.paired import PairedComparison, holm, paired_comparison

ALPHA = 0.05
UNITS = {"exact_match": ("points", 100.0), "loss": ("nats/token", 1.0)}  # metric -> (unit, scale)
SCALE = {metric: scale for metric, (_, scale) in UNITS.items()}  # a difference of 0.01 exact match is 1 point


@dataclass(frozen=True)
class Entry:
    """One comparison to make: B - A, with one (a, b) pair of per-example values per training seed."""

    a: str
    b: str
    metric: str
    pairs: list[tuple[np.ndarray, np.ndarray]]
    group: str = ""  # e.g. the domain
    family: str = ""  # comparisons adjusted together (Holm)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    group: str
    family: str
    stats: PairedComparison
    p_adjusted: float

    @property
    def significant(self) -> bool:
        return self.p_adjusted < ALPHA

    @property
    def label(self) -> str:
        return f"{self.group + ': ' if self.group else ''}{self.b} - {self.a}"

    def to_dict(self) -> dict:
        return {
            "a": self.a,
            "b": self.b,
            "group": self.group,
            "family": self.family,
            **self.stats.to_dict(),
            "p_adjusted": self.p_adjusted,
            "significant": self.significant,
        }


@dataclass(frozen=True)
class EvalComparison:
    comparisons: tuple[Comparison, ...]
    alpha: float = ALPHA
    sources: dict = field(default_factory=dict)  # name -> file, for the record

    @property
    def adjusted(self) -> bool:
        """Whether any family holds more than one comparison (so Holm changed something)."""
        families = [c.family for c in self.comparisons]
        return any(families.count(f) > 1 for f in set(families))

    def to_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "correction": "holm" if self.adjusted else "none",
            "sources": self.sources,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def save(self, folder: str | os.PathLike) -> list[str]:
        """Write significance.json and significance.csv into `folder`; `mftlab plot` draws the forest plot."""
        rows = [{k: v for k, v in c.to_dict().items() if k != "discordant"} for c in self.comparisons]
        return write_result(folder, "significance", self.to_dict(), rows=rows)

    def lines(self) -> list[str]:
        """One paragraph per comparison, in words and numbers (what `mftlab compare-evals` prints)."""
        out = []
        for c in self.comparisons:
            s = c.stats
            unit, _ = UNITS[s.metric]
            seeds = f" and {s.seeds} seeds" if s.seeds > 1 else ""
            width = max(len(c.a), len(c.b))
            out.append(
                f"{c.group + ': ' if c.group else ''}{s.metric.replace('_', ' ')} over {s.examples} examples{seeds}"
            )
            out.append(f"  A  {c.a:<{width}}  {_level(s.mean_a, s.metric)}")
            out.append(f"  B  {c.b:<{width}}  {_level(s.mean_b, s.metric)}")
            out.append(
                f"  B - A  {_shift(s.difference, s.metric)} {unit}, 95% CI [{_shift(s.ci_low, s.metric)}, "
                f"{_shift(s.ci_high, s.metric)}]"
            )
            adjusted = f", Holm-adjusted p = {c.p_adjusted:.4g}" if self.adjusted else ""
            verdict = "significant at 5%" if c.significant else "not significant at 5%"
            out.append(f"  {_test_words(s)}: p = {s.p_value:.4g}{adjusted}: {verdict}")
        if self.adjusted:
            out.append(f"Holm's correction over {len(self.comparisons)} comparisons (family-wise error 5%).")
        return out


def _level(value: float, metric: str) -> str:
    return f"{100 * value:.2f}%" if metric == "exact_match" else f"{value:.4f}"


def _shift(value: float, metric: str) -> str:
    return f"{100 * value:+.2f}" if metric == "exact_match" else f"{value:+.4g}"


def _count(n: int) -> str:
    return f"{n} example{'' if n == 1 else 's'}"


def _test_words(s: PairedComparison) -> str:
    if s.test == "mcnemar-exact":
        b_only, a_only = s.discordant
        return f"exact McNemar test (right in B only: {_count(b_only)}, in A only: {a_only})"
    if s.test == "permutation":
        return f"paired permutation test ({s.resamples} resamples)"
    return f"two-level bootstrap over seeds and examples ({s.resamples} resamples)"


def compare(entries: list[Entry], seed: int = 0, sources: dict | None = None) -> EvalComparison:
    """Every entry's comparison, with Holm's adjustment within each family."""
    stats = [
        paired_comparison(*e.pairs[0], metric=e.metric, seed=seed)
        if len(e.pairs) == 1
        else hierarchical_comparison(e.pairs, metric=e.metric, seed=seed)
        for e in entries
    ]
    adjusted = [0.0] * len(entries)
    for family in dict.fromkeys(e.family for e in entries):
        members = [i for i, e in enumerate(entries) if e.family == family]
        for i, p in zip(members, holm([stats[i].p_value for i in members])):
            adjusted[i] = p
    comparisons = tuple(Comparison(e.a, e.b, e.group, e.family, s, p) for e, s, p in zip(entries, stats, adjusted))
    return EvalComparison(comparisons, sources=dict(sources or {}))

"""`mftlab.compare_evals`: is B's difference from A on the same test examples real?"""

from __future__ import annotations

import os

from mftlab.errors import ConfigError
from mftlab.significance.paired import check_metric
from mftlab.significance.per_example import paired_values, read_per_example
from mftlab.significance.result import Entry, EvalComparison, compare


def _rows(source, name: str) -> list[dict]:
    if isinstance(source, (str, os.PathLike)):
        return read_per_example(source)
    return list(source)


def _name(source, fallback: str) -> str:
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else fallback


def compare_evals(a=None, b=None, *, metric: str = "exact_match", pairs=None, seed: int = 0) -> EvalComparison:
    """B - A on the same examples, from two per-example files (`mftlab eval --per-example`) or their rows.

    `pairs=[(a1, b1), (a2, b2), ...]` compares several pairs at once, with Holm's adjustment over them.
    Returns an `EvalComparison`: `.comparisons[i].stats` (difference, ci_low, ci_high, p_value),
    `.lines()` in words, `.save(folder)` for `mftlab plot`.

    Example:
        >>> import mftlab
        >>> a = [{"index": i, "correct": int(i % 3 == 0)} for i in range(60)]
        >>> b = [{"index": i, "correct": int(i % 3 != 1)} for i in range(60)]
        >>> result = mftlab.compare_evals(a, b, metric="exact_match")
        >>> round(result.comparisons[0].stats.difference, 3)
        0.333
    """
    check_metric(metric)
    if pairs is None:
        if a is None or b is None:
            raise ConfigError("give two per-example results (a, b) or pairs=[(a, b), ...]")
        pairs = [(a, b)]
    elif a is not None or b is not None:
        raise ConfigError("give either a and b or pairs=, not both")
    entries, sources = [], {}
    for k, (source_a, source_b) in enumerate(pairs):
        names = (_name(source_a, f"A{k + 1}"), _name(source_b, f"B{k + 1}"))
        values = paired_values(_rows(source_a, names[0]), _rows(source_b, names[1]), metric, names)
        entries.append(Entry(names[0], names[1], metric, [values]))
        for name, source in zip(names, (source_a, source_b)):
            if isinstance(source, (str, os.PathLike)):
                sources[name] = os.fspath(source)
    return compare(entries, seed=seed, sources=sources)

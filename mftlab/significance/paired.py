"""Is a difference between two methods on the same examples real? Paired statistics over test examples.

    result = paired_comparison(a, b, metric="exact_match")   # a, b: per-example values, same examples, same order
    result.difference, result.ci_low, result.ci_high, result.p_value

- the difference is mean(b - a): for exact match each example's 0/1 correctness, for loss each example's
  mean answer-token loss;
- its 95% confidence interval is scipy's paired bootstrap with BCa (`scipy.stats.bootstrap(..., paired=True,
  method="BCa")`, 10,000 resamples, seeded);
- the test is the exact McNemar test for exact match (the discordant pairs, a two-sided binomial test,
  `scipy.stats.binomtest`) and a paired permutation test for loss (`scipy.stats.permutation_test`,
  `permutation_type="samples"`: each example's two values swapped or not);
- `holm` adjusts the p-values of several comparisons at once (Holm's step-down, family-wise error).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from mftlab.errors import ConfigError
from mftlab.options_meta import unknown_choice

METRICS = ("exact_match", "loss")
RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedComparison:
    metric: str
    examples: int
    mean_a: float
    mean_b: float
    difference: float  # mean(b - a)
    ci_low: float
    ci_high: float
    test: str  # "mcnemar-exact" | "permutation" | "hierarchical-bootstrap"
    p_value: float
    discordant: tuple[int, int] | None = None  # exact match: (a wrong & b right, a right & b wrong)
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = 0
    seeds: int = 1  # training seeds combined (more than one: see hierarchical.py)

    def to_dict(self) -> dict:
        values = asdict(self)
        values["discordant"] = list(self.discordant) if self.discordant is not None else None
        return values


def _mean_difference(a, b, axis=-1):
    return np.mean(b - a, axis=axis)


def _interval(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    from scipy import stats

    diff = b - a
    if np.all(diff == diff[0]):  # no spread: every resample gives the same mean (BCa is undefined there)
        return float(diff[0]), float(diff[0])
    result = stats.bootstrap(
        (a, b),
        _mean_difference,
        paired=True,
        vectorized=True,
        method="BCa",
        n_resamples=RESAMPLES,
        confidence_level=CONFIDENCE,
        random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[int, int]]:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes, and the discordant counts (b only, a only)."""
    from scipy import stats

    b_only = int(np.sum((a == 0) & (b == 1)))
    a_only = int(np.sum((a == 1) & (b == 0)))
    if b_only + a_only == 0:
        return 1.0, (0, 0)
    return float(stats.binomtest(b_only, b_only + a_only, 0.5, alternative="two-sided").pvalue), (b_only, a_only)


def paired_permutation(a: np.ndarray, b: np.ndarray, seed: int) -> float:
    """Two-sided p-value of mean(b - a) against swapping each example's pair (seeded)."""
    from scipy import stats

    if np.all(a == b):
        return 1.0
    result = stats.permutation_test(
        (a, b),
        _mean_difference,
        permutation_type="samples",
        vectorized=True,
        n_resamples=RESAMPLES,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    return float(result.pvalue)


def check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"metric '{metric}' {unknown_choice(METRICS)}")


def paired_comparison(a, b, metric: str = "exact_match", seed: int = 0) -> PairedComparison:
    """B - A on the same examples (values in the same order), with its 95% BCa interval and the metric's test."""
    check_metric(metric)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ConfigError(
            f"the two result sets differ in size ({a.size} and {b.size} examples); compare the same examples"
        )
    if a.size < 2:
        raise ConfigError(f"{a.size} example(s) is too few for a confidence interval; give at least 2")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ConfigError("a per-example value is not finite (nan or inf); check the per-example files")
    if metric == "exact_match":
        if not np.all(np.isin(a, (0.0, 1.0)) & np.isin(b, (0.0, 1.0))):
            raise ConfigError("exact match values must be 0 or 1 per example; use --metric loss for losses")
        p_value, discordant = mcnemar_exact(a, b)
        test = "mcnemar-exact"
    else:
        p_value, discordant, test = paired_permutation(a, b, seed), None, "permutation"
    low, high = _interval(a, b, seed)
    return PairedComparison(
        metric,
        int(a.size),
        float(a.mean()),
        float(b.mean()),
        float((b - a).mean()),
        low,
        high,
        test,
        p_value,
        discordant,
        seed=seed,
    )


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given), each at most 1."""
    p = np.asarray(p_values, dtype=np.float64)
    order = np.argsort(p, kind="stable")
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()

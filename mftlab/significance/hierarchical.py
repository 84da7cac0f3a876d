"""A difference measured over several training seeds: both sources of noise in one interval.

    result = hierarchical_comparison([(a_seed0, b_seed0), (a_seed1, b_seed1), ...], metric="exact_match")

Each pair holds two methods' per-example values on the same test examples, one pair per training
seed. The estimate is the mean over seeds of mean(b - a). Its interval is a two-level bootstrap
(10,000 resamples, seeded): draw the seeds with replacement, then, independently for every seed
drawn, the test examples with replacement (paired: an example keeps both its values), and take
the 2.5th and 97.5th percentiles of the resampled estimates. The p-value is the bootstrap's
two-sided test of no difference: the share of resampled estimates at least as far from the
estimate as the estimate is from 0 (the distribution shifted to the null), (1 + count) / (1 + 10,000).
With few seeds the seed level is coarse (3 seeds give 10 distinct seed draws): the interval then
mostly says how much the seeds disagree, which is the point.
"""

from __future__ import annotations

import numpy as np

from mftlab.errors import ConfigError
from mftlab.significance.paired import CONFIDENCE, RESAMPLES, PairedComparison, check_metric

CHUNK = 1000  # resamples drawn at once (bounds memory to CHUNK x seeds x examples indices)


def _resampled_estimates(diffs: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """RESAMPLES two-level bootstrap estimates of the mean over seeds of the mean difference."""
    seeds = len(diffs)
    out = np.empty(RESAMPLES)
    for start in range(0, RESAMPLES, CHUNK):
        size = min(CHUNK, RESAMPLES - start)
        picks = rng.integers(0, seeds, size=(size, seeds))  # (resample, slot) -> seed
        total = np.zeros(size)
        for slot in range(seeds):
            for s, diff in enumerate(diffs):
                rows = np.flatnonzero(picks[:, slot] == s)
                if rows.size:
                    draws = rng.integers(0, diff.size, size=(rows.size, diff.size))
                    total[rows] += diff[draws].mean(axis=1)
        out[start : start + size] = total / seeds
    return out


def hierarchical_comparison(pairs, metric: str = "exact_match", seed: int = 0) -> PairedComparison:
    """B - A over several training seeds (one (a, b) pair of per-example values per seed)."""
    check_metric(metric)
    pairs = [(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)) for a, b in pairs]
    if len(pairs) < 2:
        raise ConfigError("a comparison over seeds needs at least 2 seeds; use paired_comparison for one")
    for a, b in pairs:
        if a.shape != b.shape or a.ndim != 1 or a.size < 2:
            raise ConfigError("every seed needs the same examples for both methods (at least 2); check the files")
    diffs = [b - a for a, b in pairs]
    estimate = float(np.mean([d.mean() for d in diffs]))
    resampled = _resampled_estimates(diffs, np.random.default_rng(seed))
    tail = (1.0 - CONFIDENCE) / 2
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    extreme = int(np.sum(np.abs(resampled - estimate) >= abs(estimate) - 1e-12))
    p_value = 1.0 if estimate == 0 else (1 + extreme) / (1 + RESAMPLES)
    sizes = {a.size for a, _ in pairs}
    return PairedComparison(
        metric,
        sizes.pop() if len(sizes) == 1 else int(np.mean([a.size for a, _ in pairs])),
        float(np.mean([a.mean() for a, _ in pairs])),
        float(np.mean([b.mean() for _, b in pairs])),
        estimate,
        float(low),
        float(high),
        "hierarchical-bootstrap",
        float(min(1.0, p_value)),
        seed=seed,
        seeds=len(pairs),
    )

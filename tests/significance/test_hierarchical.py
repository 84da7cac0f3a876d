"""The two-level bootstrap over training seeds and test examples, on generated data."""

import numpy as np
import pytest

from mftlab.errors import ConfigError
from mftlab.significance.hierarchical import hierarchical_comparison


def _seeds(shift, seed_spread, n=300, seeds=4, rng_seed=0):
    """Per-seed losses of A and B: B = A + shift + a per-seed offset (training noise) + example noise."""
    rng = np.random.default_rng(rng_seed)
    pairs = []
    for _ in range(seeds):
        a = rng.normal(2.0, 0.5, n)
        pairs.append((a, a + shift + rng.normal(0.0, seed_spread) + rng.normal(0.0, 0.2, n)))
    return pairs


def test_a_real_difference_over_seeds_is_covered_and_rejected():
    r = hierarchical_comparison(_seeds(-0.2, 0.01), metric="loss", seed=0)
    assert r.test == "hierarchical-bootstrap" and r.seeds == 4 and r.examples == 300
    assert r.ci_low < -0.2 < r.ci_high < 0 and r.p_value < 0.01


def test_no_difference_is_not_rejected():
    r = hierarchical_comparison(_seeds(0.0, 0.01, rng_seed=1), metric="loss", seed=0)
    assert r.ci_low < 0 < r.ci_high and r.p_value > 0.05


def test_seed_noise_widens_the_interval_beyond_the_examples_alone():
    calm = hierarchical_comparison(_seeds(0.0, 0.0, rng_seed=2), metric="loss")
    noisy = hierarchical_comparison(_seeds(0.0, 0.3, rng_seed=2), metric="loss")
    assert (noisy.ci_high - noisy.ci_low) > 3 * (calm.ci_high - calm.ci_low)


def test_the_estimate_is_the_mean_over_seeds_and_the_result_is_seeded():
    pairs = _seeds(0.1, 0.05, n=50, seeds=3, rng_seed=3)
    r = hierarchical_comparison(pairs, metric="loss", seed=7)
    assert abs(r.difference - np.mean([np.mean(b - a) for a, b in pairs])) < 1e-12
    assert r == hierarchical_comparison(pairs, metric="loss", seed=7)


def test_exact_match_over_seeds():
    rng = np.random.default_rng(4)
    pairs = []
    for _ in range(3):
        a = (rng.random(500) < 0.4).astype(float)
        b = a.copy()
        b[rng.choice(np.flatnonzero(a == 0), 40, replace=False)] = 1.0
        pairs.append((a, b))
    r = hierarchical_comparison(pairs, metric="exact_match")
    assert r.ci_low <= 0.08 <= r.ci_high and r.ci_low > 0 and r.p_value < 0.01


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="at least 2 seeds"):
        hierarchical_comparison([(np.zeros(3), np.ones(3))])
    with pytest.raises(ConfigError, match="same examples"):
        hierarchical_comparison([(np.zeros(3), np.ones(4)), (np.zeros(3), np.ones(3))])
    with pytest.raises(ConfigError, match="metric 'f1' is unknown"):
        hierarchical_comparison([(np.zeros(3), np.ones(3))] * 2, metric="f1")

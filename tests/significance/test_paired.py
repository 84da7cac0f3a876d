"""Paired statistics over test examples on generated data with a known difference, with none, and by hand."""

import numpy as np
import pytest

from mftlab.errors import ConfigError
from mftlab.significance.paired import holm, mcnemar_exact, paired_comparison


def test_a_real_loss_difference_is_covered_by_the_interval_and_rejected():
    rng = np.random.default_rng(1)
    a = rng.normal(2.0, 0.5, 400)
    b = a - 0.1 + rng.normal(0.0, 0.2, 400)  # B is better (lower loss) by 0.1 on every example, plus noise
    r = paired_comparison(a, b, metric="loss", seed=0)
    assert r.test == "permutation" and r.ci_low < -0.1 < r.ci_high and r.ci_high < 0
    assert r.p_value < 0.001 and abs(r.difference - float(np.mean(b - a))) < 1e-12


def test_no_difference_is_not_rejected():
    rng = np.random.default_rng(2)
    a = rng.normal(2.0, 0.5, 400)
    b = a + rng.normal(0.0, 0.2, 400)  # same mean
    r = paired_comparison(a, b, metric="loss", seed=0)
    assert r.ci_low < 0 < r.ci_high and r.p_value > 0.05


def test_exact_match_gain_is_found_and_a_tie_is_not():
    rng = np.random.default_rng(3)
    a = (rng.random(1000) < 0.40).astype(int)
    b = a.copy()
    flip = rng.choice(np.flatnonzero(a == 0), 60, replace=False)  # 60 more right answers, none lost
    b[flip] = 1
    gain = paired_comparison(a, b, "exact_match", seed=0)
    assert gain.discordant == (60, 0) and gain.p_value < 1e-10 and gain.ci_low <= 0.06 <= gain.ci_high
    tie = paired_comparison(a, a, "exact_match")
    assert tie.p_value == 1.0 and tie.ci_low == tie.ci_high == 0.0


def test_mcnemar_by_hand():
    # 8 examples only B gets right, 2 only A: two-sided binomial, P(X <= 2 or X >= 8 | n=10, 1/2) = 112/1024
    a = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5)
    b = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 5)
    p, discordant = mcnemar_exact(a, b)
    assert discordant == (8, 2) and p == pytest.approx(112 / 1024, abs=1e-12)


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_the_interval_is_seeded():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=200), rng.normal(size=200)
    assert paired_comparison(a, b, "loss", seed=7) == paired_comparison(a, b, "loss", seed=7)


@pytest.mark.parametrize(
    "a, b, metric, message",
    [
        ([0, 1, 1], [1, 1], "exact_match", "differ in size"),
        ([0, 1], [1, 1], "accuracy", "metric 'accuracy' is unknown"),
        ([0.5, 1.0], [1.0, 1.0], "exact_match", "must be 0 or 1"),
        ([1.0, float("nan")], [1.0, 2.0], "loss", "not finite"),
        ([1.0], [2.0], "loss", "too few"),
    ],
)
def test_bad_input_is_one_clear_error(a, b, metric, message):
    with pytest.raises(ConfigError, match=message):
        paired_comparison(a, b, metric)

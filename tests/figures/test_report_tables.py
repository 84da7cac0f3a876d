"""The demo report's tables and verdicts, from a hand-made demo.json with two seeds."""

from mftlab.figures.report import cross_domain_tables, in_domain_table, verdicts


def _demo(fft=(0.50, 0.40), mft=(0.55, 0.47)):
    def scores(f, m):
        methods = {"fft": f, "mft": m}
        return {
            d: {
                name: {
                    "test": {t: {"exact_match": v if t == d else 0.1, "loss": 1.0} for t in ("math", "code")},
                    "validation_loss": 1.0,
                }
                for name, v in methods.items()
            }
            for d in ("math", "code")
        }

    return {
        "domains": ["math", "code"],
        "methods": ["fft", "mft"],
        "seeds": [0, 1],
        "method_names": {"fft": "FFT best", "mft": "MFT"},
        "method_short": {"fft": "FFT", "mft": "MFT"},
        "roles": {"method": "mft", "upper_bound": "fft"},
        "scores": {"0": scores(fft[0], mft[0]), "1": scores(fft[1], mft[1])},
    }


def test_mean_and_spread_over_seeds():
    rows = in_domain_table(_demo())
    assert rows[0] == ["Method", "math", "code"]
    assert rows[1] == ["FFT best", "45.0 ± 7.1", "45.0 ± 7.1"]
    assert rows[2] == ["MFT", "51.0 ± 5.7", "51.0 ± 5.7"]
    cross = cross_domain_tables(_demo())["math"]
    assert cross[1] == ["FFT best", "45.0 ± 7.1", "10.0 ± 0.0"]


def test_verdicts_say_what_happened():
    better = verdicts(_demo())
    assert better[0].startswith("**math**: MFT beat the FFT upper bound: 51.0% vs 45.0%")
    assert "+6.0 points (± 1.4 over 2 seeds)" in better[0]
    worse = verdicts(_demo(fft=(0.6, 0.6), mft=(0.5, 0.5)))
    assert "MFT did not beat" in worse[0] and "-10.0 points" in worse[0]
    tie = verdicts(_demo(fft=(0.5, 0.5), mft=(0.5, 0.5)))
    assert "MFT tied with" in tie[0]


def test_verdicts_take_names_and_roles_from_the_results():
    demo = _demo()
    demo["method_short"] = {"fft": "full FT", "mft": "masking"}
    assert verdicts(demo)[0].startswith("**math**: masking beat the full FT upper bound")
    demo["roles"] = {"method": "fft", "upper_bound": "mft"}
    assert verdicts(demo)[0].startswith("**math**: full FT did not beat the masking upper bound")

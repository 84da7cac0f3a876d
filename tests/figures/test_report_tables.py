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


def _significance(tmp_path, p_values, seeds=1):
    """A saved significance result of MFT - FFT in exact match over both domains (known p-values)."""
    from mftlab.significance.paired import PairedComparison
    from mftlab.significance.result import Comparison, EvalComparison

    comparisons = []
    for domain, p, adjusted in zip(("math", "code"), p_values, (min(1, 2 * min(p_values)), max(p_values))):
        stats = PairedComparison(
            "exact_match", 100, 0.45, 0.51, 0.06, 0.01, 0.11, "mcnemar-exact", p, (9, 3), seeds=seeds
        )
        comparisons.append(Comparison("FFT", "MFT", domain, "MFT - FFT, exact_match", stats, adjusted))
    folder = tmp_path / "analysis" / "significance"
    EvalComparison(tuple(comparisons)).save(folder)
    return "analysis/significance"


def test_verdicts_come_from_the_paired_tests_when_the_protocol_made_them(tmp_path):
    from mftlab.figures import significance_section

    demo = _demo()
    demo["analysis"] = {"significance": _significance(tmp_path, (0.004, 0.2))}
    result = significance_section.load(str(tmp_path), demo)
    math, code = verdicts(demo, result)
    assert math.startswith("**math**: MFT beat the FFT upper bound: 51.0% vs 45.0%")
    assert "(95% CI +1.0 to +11.0 over 100 test examples, exact McNemar p = 0.004, Holm over 2 domains: 0.008)" in math
    assert math.endswith(": significant at 5% (Holm over domains).")
    assert code.startswith("**code**: MFT did not significantly differ from the FFT upper bound")
    assert code.endswith(": not significant.")
    rows = significance_section.difference_rows(result, demo, "exact_match")
    assert rows == [["MFT - FFT (95% CI)", "+6.0 [+1.0, +11.0] *", "+6.0 [+1.0, +11.0]"]]
    assert significance_section.difference_rows(result, demo, "loss") == []  # no loss comparisons saved
    assert verdicts(demo)[0].endswith("(± 1.4 over 2 seeds).")  # without the result: as before

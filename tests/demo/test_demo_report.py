"""`mftlab demo --quick` end to end: every table filled, every figure non-empty, numbers in range."""

import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest


def test_report_tables_and_figures(quick_demo):
    out, stdout = quick_demo
    report = (out / "report.md").read_text()
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["domains"]) == {"math", "code", "instruct"}
    for method in ("backbone", "fft", "continued_fft", "mft", "random", "magnitude"):
        assert method in demo["methods"]
    # Every table cell of the main tables is a number (or mean ± std) in range; nothing is missing.
    for line in report.split("## Appendix")[0].splitlines():
        if line.startswith("| ") and " (95% CI) |" in line:  # the paired differences under Table 1 and the loss table
            cells = [c.strip() for c in line.strip("|").split("|")][1:]
            assert all(re.fullmatch(r"[+-]\d+\.\d+ \[[+-]\d+\.\d+, [+-]\d+\.\d+\]( \*)?", c) for c in cells), line
        elif line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")][1:]  # bold: a column's best
            assert cells and all(re.fullmatch(r"\d+\.\d+( ± \d+\.\d+)?", c) for c in cells), line
            assert all(0.0 <= float(c.split(" ± ")[0]) <= 100.0 for c in cells), line
    for seed, by_domain in demo["scores"].items():
        for domain, methods in by_domain.items():
            for method, result in methods.items():
                for test, s in result["test"].items():
                    assert 0.0 <= s["exact_match"] <= 1.0
                    assert math.isfinite(s["loss"]) and s["loss"] > 0
    verdicts = [line for line in report.splitlines() if line.startswith("- **")]
    assert len(verdicts) == 3
    pattern = r"MFT (beat|did not beat|did not significantly differ from) the FFT upper bound: [\d.]+% vs [\d.]+%"
    assert all(re.search(pattern, v) for v in verdicts)
    assert all(
        re.search(r"\(95% CI [+-][\d.]+ to [+-][\d.]+ over \d+ test examples, exact McNemar p = ", v) for v in verdicts
    )
    assert all(v.endswith((": not significant.", ": significant at 5% (Holm over domains).")) for v in verdicts)
    assert "## Table 1" in report and "## Table 5" in report
    # Every figure the report shows exists and is non-empty, with PDF and interactive versions.
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", report)
    assert len(images) >= 10
    for rel in images:
        png = out / rel
        assert png.stat().st_size > 5000, rel
        assert (out / rel.replace(".png", ".pdf")).stat().st_size > 1000, rel
    assert any("landscape" in rel for rel in images) and any("training_curves" in rel for rel in images)
    html_files = glob.glob(str(out / "**" / "*.html"), recursive=True)
    for path in html_files:
        text = open(path, encoding="utf-8").read()
        assert not re.search(r"<script[^>]+src=[\"']https?://", text), path
    assert "(42/42)" in stdout or "done in" in stdout


def test_mft_is_the_variant_chosen_on_validation(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    demo = json.loads((out / "demo.json").read_text())
    appendix = report.split("## Appendix: MFT variants, chosen on validation")[1].split("\n## ")[0]
    assert "were not used to choose" in appendix
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in appendix.splitlines()
        if line.startswith("| ") and not line.startswith("| Domain")
    ]
    grid = len(demo["config"]["mft_inits"]) * len(demo["config"]["mft_score_lrs"])
    assert grid >= 4 and len(rows) == grid * len(demo["domains"])
    for domain in demo["domains"]:
        entry = demo["mft_variants"]["0"][domain]
        val = {name: v["validation_loss"] for name, v in entry["variants"].items()}
        assert entry["selected"] == min(val, key=val.get)
        chosen = entry["variants"][entry["selected"]]
        assert demo["scores"]["0"][domain]["mft"]["test"] == chosen["test"]  # Table 1's MFT is the chosen variant
        marked = [r for r in rows if r[0] == domain and r[-1] == "**chosen**"]
        assert len(marked) == 1 and marked[0][1].startswith(chosen["score_init"])
        assert all(v["step0_loss"] is not None for v in entry["variants"].values())
    assert "chosen on validation loss among" in report


def test_random_baseline_is_drawn_over_seeds_and_summarised(quick_demo):
    out, _ = quick_demo
    report = (out / "report.md").read_text()
    demo = json.loads((out / "demo.json").read_text())
    import numpy as np

    from mftlab.mask.maskfile import load_mask

    for domain in demo["domains"]:
        draws = demo["scores"]["0"][domain]["random"]["draws"]
        assert len(draws) == demo["config"]["random_seeds"] == 3
        assert len({d["mask_seed"] for d in draws}) == 3
        mean = sum(d["test"][domain]["loss"] for d in draws) / 3
        assert demo["scores"]["0"][domain]["random"]["test"][domain]["loss"] == pytest.approx(mean)
    files = sorted(glob.glob(str(out / "seed-0" / "math" / "baselines" / "random*.safetensors")))
    masks = [load_mask(f) for f in files]
    assert len(masks) == 3
    name = masks[0].names[0]
    assert not np.array_equal(masks[0].packed[name], masks[1].packed[name])
    random_row = next(line for line in report.splitlines() if line.startswith("| Random mask"))
    assert "±" in random_row
    assert re.search(r"Random masks were drawn 3 times per domain", report)


def test_rerun_reuses_finished_steps(quick_demo):
    out, _ = quick_demo
    before = os.path.getmtime(out / "seed-0" / "math" / "mft-random-lr0.001" / "mask.safetensors")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "demo", "--out", str(out), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.getmtime(out / "seed-0" / "math" / "mft-random-lr0.001" / "mask.safetensors") == before


def test_plot_redraws_the_demo_from_json(quick_demo):
    out, _ = quick_demo
    png = out / "figures" / "training_curves.png"
    png.unlink()
    from click.testing import CliRunner

    from mftlab.cli.main import main

    result = CliRunner().invoke(main, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 5000


def test_the_benchmark_table_comes_through_lm_eval_and_equals_the_built_in_exact_match(quick_demo):
    pytest.importorskip("lm_eval")
    out, _ = quick_demo
    demo = json.loads((out / "demo.json").read_text())
    assert demo["benchmark_tasks"] == {d: [f"tinybench_{d}"] for d in demo["domains"]}
    for seed, per_domain in demo["benchmarks"].items():
        for domain, entry in per_domain.items():
            assert set(entry["methods"]) == set(demo["methods"])
            for method, tasks in entry["methods"].items():
                through_lm_eval = tasks[f"tinybench_{domain}"]["exact_match,none"]
                assert through_lm_eval == demo["scores"][seed][domain][method]["test"][domain]["exact_match"], (
                    domain,
                    method,
                )
    report = (out / "report.md").read_text()
    assert "## Table 1 on benchmarks (lm-eval, %)" in report and "math, tinybench_math exact_match: MFT - FFT" in report
    assert (out / "tasks" / "tinybench_math.yaml").exists()
    rows = (out / "seed-0" / "math" / "eval" / "bench-fft.examples.jsonl").read_text().splitlines()
    assert (
        len(rows) == 60 and json.loads(rows[0])["scored_by"] == "lm-eval:exact_match"
    )  # lm-eval's per-document scores


def test_the_reports_intervals_are_those_of_compare_evals_on_the_kept_per_example_files(quick_demo):
    from click.testing import CliRunner

    from mftlab.cli.main import main

    out, _ = quick_demo
    demo = json.loads((out / "demo.json").read_text())
    saved = json.loads((out / demo["analysis"]["significance"] / "significance.json").read_text())
    assert {(c["b"], c["a"], c["metric"]) for c in saved["comparisons"]} == {
        ("MFT", a, m) for a in ("FFT", "continued FFT") for m in ("exact_match", "loss")
    }
    for c in saved["comparisons"]:
        family = [x for x in saved["comparisons"] if x["family"] == c["family"]]
        assert len(family) == 3 and c["p_adjusted"] >= c["p_value"]  # Holm over the three domains
    domain = "math"
    chosen = demo["mft_variants"]["0"][domain]["selected"]
    folder = out / "seed-0" / domain / "eval"
    fft, mft = folder / f"examples-fft-{domain}.jsonl", folder / f"examples-mft-{chosen}-{domain}.jsonl"
    assert len(fft.read_text().splitlines()) == 60  # one line per test example
    for metric in ("exact_match", "loss"):
        result = CliRunner().invoke(main, ["compare-evals", str(fft), str(mft), "--metric", metric, "--json"])
        assert result.exit_code == 0, result.output
        [alone] = json.loads(result.stdout)["comparisons"]
        [in_report] = [c for c in saved["comparisons"] if (c["group"], c["a"], c["metric"]) == (domain, "FFT", metric)]
        for key in ("difference", "ci_low", "ci_high", "p_value", "examples"):
            assert alone[key] == in_report[key], (metric, key)
    report = (out / "report.md").read_text()
    assert "![MFT minus FFT" in report and (out / "analysis" / "significance" / "forest_plot.png").stat().st_size > 5000

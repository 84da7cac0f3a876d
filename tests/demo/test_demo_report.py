"""`mftlab demo --quick` end to end: every table filled, every figure non-empty, numbers in range."""

import glob
import json
import math
import os
import re
import subprocess
import sys


def test_report_tables_and_figures(quick_demo):
    out, stdout = quick_demo
    report = (out / "report.md").read_text()
    demo = json.loads((out / "demo.json").read_text())
    assert set(demo["domains"]) == {"math", "code", "instruct"}
    for method in ("backbone", "fft", "continued_fft", "mft", "random", "magnitude"):
        assert method in demo["methods"]
    # Every table cell is a number in range; nothing is missing.
    for line in report.splitlines():
        if line.startswith("| ") and not line.startswith("| Method"):
            cells = [c.strip() for c in line.strip("|").split("|")][1:]
            assert cells and all(re.fullmatch(r"\d+\.\d+", c) for c in cells), line
            assert all(0.0 <= float(c) <= 100.0 for c in cells), line
    for seed, by_domain in demo["scores"].items():
        for domain, methods in by_domain.items():
            for method, result in methods.items():
                for test, s in result["test"].items():
                    assert 0.0 <= s["exact_match"] <= 1.0
                    assert math.isfinite(s["loss"]) and s["loss"] > 0
    verdicts = [line for line in report.splitlines() if line.startswith("- **")]
    assert len(verdicts) == 3
    assert all(re.search(r"MFT (beat|did not beat|tied with) the FFT upper bound: [\d.]+% vs [\d.]+%", v) for v in verdicts)
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


def test_rerun_reuses_finished_steps(quick_demo):
    out, _ = quick_demo
    before = os.path.getmtime(out / "seed-0" / "math" / "mft" / "mask.safetensors")
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "mftlab.cli.main", "demo", "--out", str(out), "--quick"],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.path.getmtime(out / "seed-0" / "math" / "mft" / "mask.safetensors") == before


def test_plot_redraws_the_demo_from_json(quick_demo):
    out, _ = quick_demo
    png = out / "figures" / "training_curves.png"
    png.unlink()
    from click.testing import CliRunner

    from mftlab.cli.main import main

    result = CliRunner().invoke(main, ["plot", str(out)])
    assert result.exit_code == 0, result.output
    assert png.stat().st_size > 5000

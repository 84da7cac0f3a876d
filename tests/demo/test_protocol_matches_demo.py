"""`mftlab protocol OUT/protocol.yaml` (the demo's own config) reproduces `mftlab demo`'s tables bit for bit."""

import json
import os
import subprocess
import sys

import pytest
import yaml


def _tables(report: str) -> list[str]:
    """Every line of the report but the title, the intro (which holds the wall time) and the appendix of
    where it ran (the steps' wall times)."""
    lines = report.split("## Appendix: where it ran")[0].splitlines()
    return [line for line in lines[3:] if not line.startswith("![")]  # figure paths differ by folder only


def _protocol(config, out):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "protocol", str(config), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads((out / "demo.json").read_text())


def test_one_domain_of_the_builtin_config_gives_the_demos_numbers_for_it(quick_demo, tmp_path):
    # Each domain's runs depend only on the backbone and that domain's data, so the demo's config cut to
    # one domain must give that domain's numbers bit for bit (a third of the cost of the whole config,
    # which the slow test below runs).
    out, _ = quick_demo
    config = yaml.safe_load((out / "protocol.yaml").read_text())
    config["domains"] = {"math": config["domains"]["math"]}
    (out / "protocol-math.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    protocol = _protocol(out / "protocol-math.yaml", tmp_path / "math")
    demo = json.loads((out / "demo.json").read_text())
    assert protocol["methods"] == demo["methods"] and protocol["domains"] == ["math"]
    for method, row in protocol["scores"]["0"]["math"].items():
        expected = demo["scores"]["0"]["math"][method]
        assert row["test"]["math"] == expected["test"]["math"], method
        assert row.get("validation_loss") == expected.get("validation_loss"), method
    chosen, expected = protocol["mft_variants"]["0"]["math"], demo["mft_variants"]["0"]["math"]
    assert chosen["selected"] == expected["selected"]
    for name, variant in chosen["variants"].items():
        assert variant["validation_loss"] == expected["variants"][name]["validation_loss"], name


@pytest.mark.slow
def test_protocol_with_the_builtin_config_reproduces_the_demo(quick_demo, tmp_path):
    out, _ = quick_demo
    again = tmp_path / "protocol-out"
    protocol = _protocol(out / "protocol.yaml", again)
    demo = json.loads((out / "demo.json").read_text())
    assert protocol["scores"] == demo["scores"]  # every method's numbers, every domain, bit for bit
    assert protocol["mft_variants"] == demo["mft_variants"]
    for key in ("methods", "method_names", "method_short", "curve_names", "curve_from", "reference_lines", "roles"):
        assert protocol[key] == demo[key]
    demo_report, protocol_report = ((folder / "report.md").read_text() for folder in (out, again))
    assert protocol_report.startswith("# mftlab protocol report")
    assert _tables(protocol_report) == _tables(demo_report)
    intro = [report.splitlines()[2].split("; wall time")[0] for report in (demo_report, protocol_report)]
    assert intro[0] == intro[1]

"""`mftlab protocol OUT/protocol.yaml` (the demo's own config) reproduces `mftlab demo`'s tables bit for bit."""

import json
import os
import subprocess
import sys


def _tables(report: str) -> list[str]:
    """Every line of the report but the title and the intro (which holds the wall time)."""
    lines = report.splitlines()
    return [line for line in lines[3:] if not line.startswith("![")]  # figure paths differ by folder only


def test_protocol_with_the_builtin_config_reproduces_the_demo(quick_demo, tmp_path):
    out, _ = quick_demo
    config = out / "protocol.yaml"
    assert config.exists()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    again = tmp_path / "protocol-out"
    result = subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "protocol", str(config), "--out", str(again)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    demo, protocol = (json.loads((folder / "demo.json").read_text()) for folder in (out, again))
    assert protocol["scores"] == demo["scores"]  # every method's numbers, every domain, bit for bit
    assert protocol["mft_variants"] == demo["mft_variants"]
    for key in ("methods", "method_names", "method_short", "curve_names", "curve_from", "reference_lines", "roles"):
        assert protocol[key] == demo[key]
    demo_report, protocol_report = ((folder / "report.md").read_text() for folder in (out, again))
    assert protocol_report.startswith("# mftlab protocol report")
    assert _tables(protocol_report) == _tables(demo_report)
    assert (
        demo_report.splitlines()[2].split("; wall time")[0] == protocol_report.splitlines()[2].split("; wall time")[0]
    )

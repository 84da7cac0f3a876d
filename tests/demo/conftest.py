"""One quick demo run shared by the report and browser tests (about a minute on 2 cores)."""

import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    result = subprocess.run(
        [sys.executable, "-m", "mftlab.cli.main", "demo", "--out", str(out), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return out, result.stdout

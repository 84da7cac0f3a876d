"""bench/gpu_check.py falls back cleanly to the CPU: results marked "cpu fallback", GPU rows pending."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))


def test_cpu_fallback_in_process(monkeypatch, tmp_path):
    import gpu_check

    monkeypatch.setattr(gpu_check, "CPU_SIZE", dict(gpu_check.CPU_SIZE, layers=1, steps=1, warmup=0, grid=1, seq=32,
                                                    eval_tokens=32))
    result = gpu_check.main(["--cpu", "--no-write", "--out", str(tmp_path / "r.json")])
    assert result["mode"] == "cpu fallback" and result["device"] == "cpu"
    assert result["masks_cpu_gpu"]["equal"] and result["masks_cpu_gpu"]["comparisons"] == 24
    assert result["mft_over_fft_step"] > 0 and result["point_over_eval"] > 0
    assert "plan" not in result  # the plan comparison needs a GPU's measured peak
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["mode"] == "cpu fallback"
    text = gpu_check.section(result)
    assert "GPU rows pending: no GPU was available" in text and "MFT step / FFT step" in text


@pytest.mark.slow
def test_gpu_check_script_cpu_fallback(tmp_path):
    """The shell wrapper end to end (whatever the machine: on CUDA this is the real check)."""
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), "--no-write", "--out",
                           str(tmp_path / "r.json")], capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["masks_cpu_gpu"]["equal"]
    assert result["seconds"] < (300 if result["mode"] == "gpu" else 60)

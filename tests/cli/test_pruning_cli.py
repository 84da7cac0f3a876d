"""`mftlab baseline --kind wanda|snip`: files, metadata, and one `Error:` line for bad input."""

import json
import os

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.maskfile import load_mask


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_clean_error(result, match):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert match in result.output, result.output

RECORDS = [{"prompt": "2+3=", "completion": "5"}, {"prompt": "say hi ", "completion": "hello there"},
           {"text": "a plain sentence for calibration."}]


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    return path


@pytest.mark.parametrize("model, kind", [("tiny-gpt2", "wanda"), ("tiny-llama", "snip")])
def test_wanda_and_snip_masks(tmp_path, calib, model, kind):
    out = tmp_path / f"{kind}.safetensors"
    result = invoke("baseline", model, "--kind", kind, "--data", calib, "--max-tokens", 50, "--layers", "1",
                    "--out", out)
    assert result.exit_code == 0, result.output
    assert "calibrated on 50 tokens" in result.output
    method = load_mask(out).method
    assert method["name"] == kind and method["calibration"]["tokens"] == 50
    assert method["calibration"]["fingerprint"].startswith("sha256:")
    assert method["selection"] == ("topk-row" if kind == "wanda" else "topk-tensor")
    explicit = tmp_path / "explicit.safetensors"
    assert invoke("baseline", model, "--kind", kind, "--data", calib, "--granularity", "global", "--layers", "1",
                  "--out", explicit).exit_code == 0
    assert load_mask(explicit).method["selection"] == "topk-global"


def test_bad_calibration_input(tmp_path, calib):
    out = tmp_path / "out" / "m.safetensors"
    os.makedirs(out.parent)
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "wanda", "--out", out), "--kind wanda needs calibration data")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "snip", "--data", empty, "--out", out),
                       "holds no usable records")
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "wanda", "--data", calib, "--max-tokens", 0,
                              "--out", out), "--max-tokens 0 is too small")
    assert_clean_error(invoke("baseline", "tiny-llama", "--kind", "wanda", "--data", calib, "--targets", "embed_tokens",
                              "--out", out), "target 'embed_tokens' matches no linear module")
    assert os.listdir(out.parent) == []

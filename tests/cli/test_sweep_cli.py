import json
import os

import pytest
from click.testing import CliRunner

from mftlab.cli.main import main



@pytest.fixture
def setup(tmp_path, tiny_llama, tokenizer):
    model = tmp_path / "model"
    tiny_llama.save_pretrained(model)
    tokenizer.save_pretrained(model)
    lines = [json.dumps({"prompt": f"{a}+{b}=", "completion": str(a + b)}) for a in range(5) for b in range(5)]
    (tmp_path / "train.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "val.jsonl").write_text("\n".join(lines[:8]) + "\n")
    return tmp_path


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_ratio_sweep_writes_results_and_reuses_points(setup):
    out = setup / "sweep"
    args = ["sweep", "ratio", setup / "model", "--data", setup / "train.jsonl", "--eval-data", setup / "val.jsonl",
            "--out", out, "--ratios", "0.05,0.3", "--max-steps", "2", "--batch-size", "4", "--score-lr", "0.01"]
    result = run(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["0.05", "0.3"]
    assert doc["points"][1]["mask_ratio"] == pytest.approx(0.3, abs=0.01)
    assert (out / "sweep_ratio.png").stat().st_size > 5000
    stamp = os.path.getmtime(out / "points" / "ratio-0.05" / "result.json")
    again = run(*args)
    assert again.exit_code == 0
    assert os.path.getmtime(out / "points" / "ratio-0.05" / "result.json") == stamp


def test_layers_sweep_groups(setup):
    out = setup / "layers"
    result = run("sweep", "layers", setup / "model", "--data", setup / "train.jsonl", "--eval-data", setup / "val.jsonl",
                 "--out", out, "--group-size", "1", "--max-steps", "1", "--batch-size", "4", "--no-figures")
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "sweep.json").read_text())
    assert [p["label"] for p in doc["points"]] == ["0-0", "1-1"]


@pytest.mark.parametrize("extra, match, code", [
    (["--group-size", "9"], "--group-size 9 exceeds the model's 2 layers", 1),
    (["--ratios", "0.1,x"], "is not a comma list of numbers", 1),
    (["--ratios", "1.5"], "--mask-ratio 1.5 is outside", 1),
])
def test_bad_sweep_options(setup, extra, match, code):
    axis = "layers" if "--group-size" in extra else "ratio"
    result = run("sweep", axis, setup / "model", "--data", setup / "train.jsonl", "--eval-data", setup / "val.jsonl",
                 "--out", setup / "bad", "--max-steps", "1", *extra)
    assert result.exit_code == code, result.output
    assert match in result.output and "Traceback" not in result.output

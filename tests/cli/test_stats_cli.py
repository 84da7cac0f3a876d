"""`mftlab stats`: outputs exist, HTML is self-contained, user mistakes are one-line errors."""

import json
import os
import re

import pytest
import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.mft.selection import select_keep
from mftlab.mft.targeting import TargetSpec, resolve_targets, target_weights
from mftlab.models.loading import load_model


@pytest.fixture(scope="module")
def llama_mask(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats")
    model = load_model("tiny-llama").model
    weights = target_weights(model, resolve_targets(model, TargetSpec.parse()))
    g = torch.Generator().manual_seed(0)
    keep = select_keep({n: torch.rand(w.shape, generator=g) for n, w in weights.items()}, 0.1)
    path = folder / "mask.safetensors"
    save_mask(Mask.from_keep(keep, weights, "tiny-llama", {"name": "random"}), path)
    return str(path)


def assert_self_contained(folder):
    htmls = [f for f in os.listdir(folder) if f.endswith(".html")]
    assert htmls
    for name in htmls:
        text = open(os.path.join(folder, name), encoding="utf-8").read()
        assert '<script src="http' not in text and not re.search(r"<script[^>]*\ssrc=", text)
        assert "Plotly.newPlot" in text or "plotly" in text.lower()


def test_stats_with_model(llama_mask, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["stats", llama_mask, "--model", "tiny-llama", "--base", "tiny-llama", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "10.0" in result.output and "magnitude mask" in result.output
    files = set(os.listdir(out))
    for name in [
        "stats.json",
        "stats.csv",
        "stats_heatmap.png",
        "stats_heatmap.pdf",
        "stats_heatmap.html",
        "stats_concentration.png",
        "stats_magnitude.png",
        "stats_magnitude.html",
    ]:
        assert name in files
    data = json.load(open(out / "stats.json"))
    assert data["kind"] == "mftlab.stats" and data["has_delta"]
    assert_self_contained(out)
    csv_lines = open(out / "stats.csv").read().splitlines()
    assert csv_lines[0].startswith("level,group,") and len(csv_lines) == 1 + 28 + 4 + 7 + 1


def test_stats_errors_leave_nothing(llama_mask, tmp_path):
    runner = CliRunner()
    out = tmp_path / "never"
    cases = [
        ([str(tmp_path / "missing.safetensors")], "does not exist"),
        ([], "give a MASK file or --run"),
        ([llama_mask, "--base", "tiny-llama"], "needs --model"),
        ([llama_mask, "--model", "tiny-gpt2"], "not a parameter of this model"),
        (["--run", str(tmp_path)], "at least 2"),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["stats", *args, "--out", str(out)])
        assert result.exit_code == 1, result.output
        assert result.output.startswith("Error: ") and message in result.output
        assert "Traceback" not in result.output
        assert not out.exists()


def test_stats_run_dynamics(tmp_path):
    shapes = {f"model.layers.{i}.mlp.up_proj.weight": (8, 12) for i in range(3)}
    g = torch.Generator().manual_seed(0)
    keep = {n: torch.rand(s, generator=g) > 0.2 for n, s in shapes.items()}
    run = tmp_path / "run"
    for step in (10, 20, 30):
        folder = run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        keep = {n: k ^ (torch.rand(k.shape, generator=g) < 0.1) for n, k in keep.items()}
        save_mask(Mask.from_keep(keep), folder / "mask.safetensors")
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["stats", "--run", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 snapshots" in result.output
    for name in ["dynamics.json", "dynamics.csv", "dynamics_flips.png", "dynamics_flips.html", "stats.json"]:
        assert (out / name).exists()
    assert json.load(open(out / "stats.json"))["source"].endswith(os.path.join("step-000030", "mask.safetensors"))

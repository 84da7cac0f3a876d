"""`mftlab compare-masks` and `mftlab plot` on its results."""

import json
import os
import re

import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.mask.maskfile import Mask, save_mask

SHAPES = {f"model.layers.{i}.self_attn.{p}_proj.weight": (16, 13) for i in range(3) for p in "qv"}


def write_masks(folder, n=3, shapes=SHAPES):
    g = torch.Generator().manual_seed(0)
    paths = []
    for i in range(n):
        path = folder / f"m{i}.safetensors"
        save_mask(Mask.from_keep({k: torch.rand(s, generator=g) > 0.3 for k, s in shapes.items()}), path)
        paths.append(str(path))
    return paths


def test_compare_and_replot(tmp_path):
    paths = write_masks(tmp_path)
    out = tmp_path / "overlap"
    result = CliRunner().invoke(main, ["compare-masks", *paths, "--labels", "math,code,chat", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "math" in result.output and "k=3" in result.output
    data = json.load(open(out / "overlap.json"))
    assert data["labels"] == ["math", "code", "chat"] and len(data["consensus"][-1]["exactly"]) == 4
    figures = ["overlap_matrix", "overlap_layers", "overlap_consensus"]
    for name in figures:
        for ext in ("png", "pdf", "html"):
            assert (out / f"{name}.{ext}").exists()
    for name in figures:
        text = open(out / f"{name}.html", encoding="utf-8").read()
        assert '<script src="http' not in text and not re.search(r"<script[^>]*\ssrc=", text)
    header = open(out / "overlap.csv").readline()
    assert header.startswith("level,group,a,b,") and "jaccard" in header and "p_value" in header

    for name in figures:  # mftlab plot remakes them from the JSON alone
        for ext in ("png", "pdf", "html"):
            os.remove(out / f"{name}.{ext}")
    replot = CliRunner().invoke(main, ["plot", str(out)])
    assert replot.exit_code == 0, replot.output
    assert all((out / f"{name}.png").exists() and (out / f"{name}.html").exists() for name in figures)


def test_compare_errors(tmp_path):
    paths = write_masks(tmp_path, 2)
    other = tmp_path / "other.safetensors"
    save_mask(Mask.from_keep({"model.layers.0.self_attn.q_proj.weight": torch.ones(16, 13, dtype=torch.bool)}), other)
    out = tmp_path / "out"
    runner = CliRunner()
    cases = [
        ([paths[0]], "at least 2"),
        ([*paths, "--labels", "a"], "1 names for 2 masks"),
        ([*paths, "--labels", "a,a"], "repeats a name"),
        ([paths[0], str(tmp_path / "nope.safetensors")], "does not exist"),
        ([paths[0], str(other)], "--force"),
    ]
    for args, message in cases:
        result = runner.invoke(main, ["compare-masks", *args, "--out", str(out)])
        assert result.exit_code == 1 and result.output.startswith("Error: ") and message in result.output, result.output
        assert not out.exists()
    forced = runner.invoke(main, ["compare-masks", paths[0], str(other), "--force", "--no-figures", "--out", str(out)])
    assert forced.exit_code == 0 and "note: compared the 1 tensors" in forced.output

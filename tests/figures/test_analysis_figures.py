"""Stats, overlap and dynamics figures are remade from their JSON alone (no model, no masks)."""

import json
import os
import re

import torch

from mftlab.analysis.dynamics import mask_dynamics
from mftlab.analysis.overlap import compare_masks
from mftlab.analysis.stats import compute_mask_stats
from mftlab.figures.render import render_all, renderers
from mftlab.files.results import write_json
from mftlab.mask.maskfile import Mask

SHAPES = {f"model.layers.{i}.mlp.{p}_proj.weight": (12, 10) for i in range(2) for p in ("up", "down")}


def masks(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Mask.from_keep({k: torch.rand(s, generator=g) > 0.25 for k, s in SHAPES.items()}) for _ in range(n)]


def test_renderers_are_discovered():
    found = renderers()
    assert {"stats.json", "overlap.json", "dynamics.json"} <= set(found)


def test_render_all_from_json_alone(tmp_path):
    snapshots = masks(3)
    write_json(tmp_path / "stats.json", compute_mask_stats(snapshots[0]).to_dict())
    write_json(tmp_path / "dynamics.json", mask_dynamics(snapshots).to_dict())  # unknown steps: snapshot axis
    (tmp_path / "overlap").mkdir()
    write_json(tmp_path / "overlap" / "overlap.json", compare_masks(snapshots, labels=list("abc")).to_dict())
    written = render_all(tmp_path)
    names = {os.path.relpath(p, tmp_path) for p in written}
    expected = {
        "stats_heatmap",
        "stats_concentration",
        "dynamics_flips",
        os.path.join("overlap", "overlap_matrix"),
        os.path.join("overlap", "overlap_layers"),
        os.path.join("overlap", "overlap_consensus"),
    }
    assert {f"{e}.{ext}" for e in expected for ext in ("png", "pdf", "html")} <= names
    assert not any("stats_magnitude" in n for n in names)  # no --model: no magnitude histograms
    for path in written:
        assert os.path.getsize(path) > 1000
        if path.endswith(".html"):
            text = open(path, encoding="utf-8").read()
            assert not re.search(r"<script[^>]*\ssrc=", text)


def test_stats_json_is_strict(tmp_path):
    path = write_json(tmp_path / "stats.json", compute_mask_stats(masks(1)[0]).to_dict())
    text = open(path).read()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["heatmap"]["layers"] == [0, 1]

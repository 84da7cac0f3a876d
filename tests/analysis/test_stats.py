"""Sparsity statistics return the ratios a mask was built with, and relate it to |w| and |Δw|."""

import pytest
import torch

from mftlab.analysis.stats import compute_mask_stats
from mftlab.errors import MaskMismatchError
from mftlab.mask.maskfile import Mask
from mftlab.mft.selection import keep_tensor, select_keep
from mftlab.mft.targeting import TargetSpec, resolve_targets, target_weights
from mftlab.models.loading import load_model

RATIOS = {0: 0.05, 1: 0.1, 2: 0.25, 3: 0.5}  # per layer


@pytest.fixture(scope="module")
def llama():
    model = load_model("tiny-llama").model
    weights = target_weights(model, resolve_targets(model, TargetSpec.parse()))
    return model, weights


def layer_ratio_mask(weights, seed=0):
    g = torch.Generator().manual_seed(seed)
    keep = {}
    for name, w in weights.items():
        layer = int(name.split(".")[2])
        keep[name] = keep_tensor(torch.rand(w.shape, generator=g), RATIOS[layer])
    return Mask.from_keep(keep, weights, "tiny-llama")


def test_known_layer_ratios(llama):
    _, weights = llama
    result = compute_mask_stats(layer_ratio_mask(weights)).to_dict()
    layers = {r["group"]: r for r in result["groups"] if r["level"] == "layer"}
    assert list(layers) == ["0", "1", "2", "3"]
    for layer, ratio in RATIOS.items():
        assert layers[str(layer)]["masked_fraction"] == pytest.approx(ratio, abs=1e-4)
    projections = [r["group"] for r in result["groups"] if r["level"] == "projection"]
    assert projections == ["q", "k", "v", "o", "gate", "up", "down"]
    overall = result["groups"][-1]
    assert overall["level"] == "overall"
    assert overall["masked_fraction"] == pytest.approx(result["mask_ratio"])
    heat = result["heatmap"]
    assert heat["layers"] == [0, 1, 2, 3] and heat["projections"] == projections
    assert heat["masked_fraction"][2][0] == pytest.approx(0.25, abs=1e-4)
    # A random mask spreads evenly over rows: low Gini, no row far above the ratio.
    assert overall["output"]["gini"] < 0.5
    assert result["has_weights"] is False and "weight" not in result["histograms"]


def test_row_concentration_and_one_d(llama):
    shape = (8, 13)
    keep = torch.ones(shape, dtype=torch.bool)
    keep[2, :] = False  # all masked weights in one output row
    mask = Mask.from_keep(
        {"model.layers.0.mlp.up_proj.weight": keep, "model.layers.0.mlp.norm_scale": torch.ones(13, dtype=torch.bool)}
    )
    t = compute_mask_stats(mask).to_dict()["tensors"][0]
    assert t["output"]["max"] == 1.0 and t["output"]["untouched"] == 7
    assert t["output"]["gini"] == pytest.approx(7 / 8)
    assert t["input"]["gini"] == 0.0 and t["input"]["max"] == pytest.approx(1 / 8)


def test_magnitude_and_delta(llama):
    model, weights = llama
    pretrained = load_model("tiny-llama").model
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for w in target_weights(pretrained, resolve_targets(pretrained, TargetSpec.parse())).values():
            w.add_(torch.randn(w.shape, generator=g) * 0.01)
    magnitude = Mask.from_keep(select_keep({n: w.abs() for n, w in weights.items()}, 0.1), weights, "tiny-llama")
    result = compute_mask_stats(magnitude, model, pretrained).to_dict()
    overall = result["groups"][-1]
    assert overall["magnitude_overlap"]["jaccard"] == 1.0
    assert overall["magnitude_overlap"]["lift"] == pytest.approx(10.0, rel=0.01)
    assert overall["delta_overlap"]["lift"] == pytest.approx(1.0, abs=0.1)  # changes were random
    t = result["tensors"][0]
    assert t["weight"]["masked"]["p99"] <= t["weight"]["kept"]["p1"]
    h = result["histograms"]["weight"]
    assert sum(h["masked"]) == overall["masked"] and sum(h["masked"]) + sum(h["kept"]) == overall["numel"]
    assert h["median_masked"] < h["median_kept"]
    assert "delta" in result["histograms"]


def test_mask_must_fit_model(llama):
    model, weights = llama
    other = {n: w + 1 for n, w in weights.items()}
    mask = Mask.from_keep(select_keep({n: w.abs() for n, w in weights.items()}, 0.1), other, "ft-other")
    with pytest.raises(MaskMismatchError, match="--force"):
        compute_mask_stats(mask, model)
    assert "differ" in compute_mask_stats(mask, model, force=True).notes[0]
    gpt2 = load_model("tiny-gpt2").model
    with pytest.raises(MaskMismatchError, match="not a parameter"):
        compute_mask_stats(mask, gpt2)

"""Masked wrappers on real tiny models: attach/detach, score init, exact-K selection, export."""

import pytest
import torch

from mftlab.errors import ConfigError
from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.masking import (
    SelectionConfig,
    attach_masks,
    compute_keep,
    detach_masks,
    export_mask,
    init_scores,
    masked_layers,
    refresh_masks,
    score_generator,
)
from mftlab.mft.selection import num_masked
from mftlab.mft.targeting import TargetSpec, resolve_targets


def _attach(model, **kwargs):
    targets = resolve_targets(model, TargetSpec.parse("all-linear"))
    return targets, attach_masks(model, targets, **kwargs)


@pytest.mark.parametrize("which", ["tiny_llama", "tiny_gpt2"])
def test_attach_detach_restores_modules_and_forward(which, request):
    model = request.getfixturevalue(which)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    modules = dict(model.named_modules())
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    reference = model(ids).logits
    targets, layers = _attach(model)
    assert len(layers) == len(targets) and all(isinstance(m, MaskedLinear) for m in layers.values())
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        t.module_name + ".mask_scores" for t in targets
    ]
    # keep all -> identical output; the wrapper reproduces Linear and Conv1D exactly
    assert torch.allclose(model(ids).logits, reference, atol=1e-6)
    refresh_masks(layers, SelectionConfig(mask_ratio=0.3))
    assert not torch.allclose(model(ids).logits, reference, atol=1e-4)
    detach_masks(model)
    assert not masked_layers(model)
    assert all(dict(model.named_modules())[t.module_name] is modules[t.module_name] for t in targets)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    assert torch.equal(model(ids).logits, reference)


@pytest.mark.parametrize("granularity", ["tensor", "row", "global"])
@pytest.mark.parametrize("score_dtype", ["fp32", "bf16"])
def test_topk_selection_is_exact_and_deterministic(tiny_gpt2, granularity, score_dtype):
    _, layers = _attach(tiny_gpt2, score_dtype=score_dtype, seed=3)
    sel = SelectionConfig(mask_ratio=0.1, granularity=granularity)
    keep = compute_keep(layers, sel)
    again = compute_keep(layers, sel)
    assert all(torch.equal(keep[n], again[n]) for n in keep)
    if granularity == "tensor":
        for n, k in keep.items():
            assert int((~k).sum()) == num_masked(k.numel(), 0.1)
    elif granularity == "row":
        for n, k in keep.items():
            out_axis = 0 if layers[n].kind == "linear" else 1
            per_row = (~k).sum(dim=1 - out_axis)
            assert torch.all(per_row == num_masked(k.shape[1 - out_axis], 0.1))
    else:
        total = sum(k.numel() for k in keep.values())
        assert sum(int((~k).sum()) for k in keep.values()) == num_masked(total, 0.1)


def test_ties_in_bf16_scores_stay_exact(tiny_llama):
    _, layers = _attach(tiny_llama, score_dtype="bf16")
    for layer in layers.values():
        layer.mask_scores.data.zero_()  # every score tied
    keep = compute_keep(layers, SelectionConfig(mask_ratio=0.25))
    for k in keep.values():
        flat = (~k).reshape(-1)
        K = num_masked(flat.numel(), 0.25)
        assert flat[:K].all() and not flat[K:].any()  # lowest index masked first


def test_threshold_selection_floor_and_rank_by_abs(tiny_llama):
    _, layers = _attach(tiny_llama)
    name = next(iter(layers))
    layers[name].mask_scores.data.fill_(-1.0)  # below any threshold: the floor keeps 5%
    sel = SelectionConfig(selection="threshold", threshold=0.0, min_keep_ratio=0.05)
    keep = compute_keep(layers, sel)
    n = keep[name].numel()
    assert int(keep[name].sum()) == -(-5 * n // 100)
    other = [k for k in keep if k != name][0]
    assert torch.equal(keep[other], layers[other].mask_scores > 0)
    abs_keep = compute_keep(layers, SelectionConfig(selection="threshold", threshold=0.01, rank_by="abs"))
    assert torch.equal(abs_keep[other], layers[other].mask_scores.abs() > 0.01)


def test_score_inits(tiny_llama):
    w = tiny_llama.model.layers[0].mlp.up_proj.weight
    random = init_scores(w, "random", 0.02, score_generator(0, "x"))
    assert random.shape == w.shape and abs(float(random.std()) - 0.02) < 0.002
    assert torch.equal(random, init_scores(w, "random", 0.02, score_generator(0, "x")))
    assert not torch.equal(random, init_scores(w, "random", 0.02, score_generator(0, "y")))
    uniform = init_scores(w, "uniform", 0.5, score_generator(0, "x"))
    assert float(uniform.abs().max()) <= 0.5
    # magnitude init: the step-0 mask is the magnitude mask
    _, layers = _attach(tiny_llama, score_init="magnitude")
    keep = compute_keep(layers, SelectionConfig(mask_ratio=0.1))
    for name, layer in layers.items():
        w = layer.base.weight.detach().abs().reshape(-1)
        masked = (~keep[name]).reshape(-1)
        assert float(w[masked].max()) <= float(w[~masked].min())
    with pytest.raises(ConfigError, match="score_init="):
        init_scores(w, "zeros", 0.02, score_generator(0, "x"))


def test_export_mask_uses_base_names_and_fingerprints(tiny_gpt2):
    targets, layers = _attach(tiny_gpt2)
    refresh_masks(layers, SelectionConfig(mask_ratio=0.2))
    mask = export_mask(layers, "tiny", {"name": "mft"})
    assert mask.names == [t.param_name for t in targets]
    assert mask.shapes[targets[0].param_name] == targets[0].shape  # Conv1D keeps its [in, out] layout
    detach_masks(tiny_gpt2)
    mask.check_fits(dict(tiny_gpt2.named_parameters(remove_duplicate=False)))
    assert abs(mask.mask_ratio - 0.2) < 1e-3


def test_bad_selection_options():
    with pytest.raises(ConfigError, match="mask_ratio=1.5 is outside"):
        SelectionConfig(mask_ratio=1.5)
    with pytest.raises(ConfigError, match="granularity='layer'"):
        SelectionConfig(granularity="layer")
    with pytest.raises(ConfigError, match="rank_by="):
        SelectionConfig(rank_by="sq")

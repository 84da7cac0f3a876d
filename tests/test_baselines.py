import torch

from mftlab.baselines import baseline_mask
from mftlab.selection import num_masked
from mftlab.targeting import TargetSpec


def test_magnitude_masks_smallest_weights(tiny_llama):
    mask, targets = baseline_mask(tiny_llama, "magnitude", 0.2, TargetSpec.parse("q_proj", "0"))
    w = tiny_llama.model.layers[0].self_attn.q_proj.weight.detach()
    keep = mask.keep(targets[0].param_name)
    assert int((~keep).sum()) == num_masked(w.numel(), 0.2)
    assert w.abs()[~keep].max() <= w.abs()[keep].min()


def test_random_is_seeded_and_independent_of_target_order(tiny_llama):
    spec = TargetSpec.parse("q_proj,v_proj")
    a, _ = baseline_mask(tiny_llama, "random", 0.1, spec, seed=1)
    b, _ = baseline_mask(tiny_llama, "random", 0.1, TargetSpec.parse("v_proj,q_proj"), seed=1)
    c, _ = baseline_mask(tiny_llama, "random", 0.1, spec, seed=2)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.keep(name), b.keep(name))
    assert not torch.equal(a.keep(name), c.keep(name))


def test_row_granularity_on_conv1d_counts_per_output_unit(tiny_gpt2):
    mask, targets = baseline_mask(tiny_gpt2, "magnitude", 0.25, TargetSpec.parse("c_fc", "1"), granularity="row")
    keep = mask.keep(targets[0].param_name)  # Conv1D weight [in=32, out=128]
    assert keep.shape == (32, 128)
    assert ((~keep).sum(dim=0) == num_masked(32, 0.25)).all()

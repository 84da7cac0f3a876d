import pytest
import torch

from mftlab.analysis.directions import DirectionSpec, RandomDirections, gaussian, perturbed_names
from mftlab.analysis.planes import RandomPlane
from mftlab.errors import ConfigError
from mftlab.mft.targeting import TargetSpec, output_axes
from mftlab.models.presets import _gpt2_config, _llama_config


def _build(config, seed=0):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config).float().eval()


@pytest.fixture(scope="module")
def llama():
    return _build(_llama_config(hidden=32, layers=2, heads=2, kv_heads=1))


@pytest.fixture(scope="module")
def gpt2():
    return _build(_gpt2_config(hidden=32, layers=2, heads=2))


def _theta(model, names):
    params = dict(model.named_parameters())
    return {n: params[n].detach().float().clone() for n in names}


def test_same_seed_same_directions_and_independent_of_other_names(llama):
    names = perturbed_names(llama, DirectionSpec())
    a = RandomDirections(DirectionSpec(seed=3), _theta(llama, names))
    b = RandomDirections(DirectionSpec(seed=3), _theta(llama, names[-2:]))  # fewer tensors
    c = RandomDirections(DirectionSpec(seed=4), _theta(llama, names))
    for name in names[-2:]:
        assert torch.equal(a.pair(name)[0], b.pair(name)[0])
        assert torch.equal(a.pair(name)[1], b.pair(name)[1])
        assert not torch.equal(a.pair(name)[0], c.pair(name)[0])
        assert not torch.equal(a.pair(name)[0], a.pair(name)[1])
    assert torch.equal(gaussian((3, 4), 1, 0, "w"), gaussian((3, 4), 1, 0, "w"))


def test_filter_normalisation_matches_row_norms(llama):
    names = perturbed_names(llama, DirectionSpec())
    dirs = RandomDirections(DirectionSpec(), _theta(llama, names))
    name = "model.layers.0.self_attn.q_proj.weight"
    d1, _ = dirs.pair(name)
    theta = dirs.theta0[name]
    torch.testing.assert_close(d1.norm(dim=1), theta.norm(dim=1), rtol=1e-5, atol=1e-7)


def test_conv1d_is_normalised_along_its_output_columns(gpt2):
    axes = output_axes(gpt2)
    name = "transformer.h.0.attn.c_attn.weight"
    assert axes[name] == 1
    names = perturbed_names(gpt2, DirectionSpec())
    d1, _ = RandomDirections(DirectionSpec(), _theta(gpt2, names), axes).pair(name)
    theta = dict(gpt2.named_parameters())[name].detach()
    torch.testing.assert_close(d1.norm(dim=0), theta.norm(dim=0), rtol=1e-5, atol=1e-7)


def test_tensor_normalisation(llama):
    names = perturbed_names(llama, DirectionSpec())
    dirs = RandomDirections(DirectionSpec(normalization="tensor"), _theta(llama, names))
    d1, _ = dirs.pair(names[0])
    torch.testing.assert_close(d1.norm(), dirs.theta0[names[0]].norm(), rtol=1e-5, atol=0)
    with pytest.raises(ConfigError, match="normalization"):
        DirectionSpec(normalization="layer")


def test_1d_parameters_left_out_by_default(llama):
    names = perturbed_names(llama, DirectionSpec())
    assert all(dict(llama.named_parameters())[n].dim() >= 2 for n in names)
    with_1d = perturbed_names(llama, DirectionSpec(include_1d=True))
    assert "model.norm.weight" in with_1d and "model.norm.weight" not in names


def test_tied_weights_perturbed_once():
    model = _build(_llama_config(hidden=32, layers=1, heads=2, kv_heads=1, tied=True))
    names = perturbed_names(model, DirectionSpec())
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert ("lm_head.weight" in names) + ("model.embed_tokens.weight" in names) == 1


def test_targets_restrict_the_perturbed_tensors(llama):
    spec = DirectionSpec(targets=TargetSpec.parse("q_proj", "1"))
    assert perturbed_names(llama, spec) == ["model.layers.1.self_attn.q_proj.weight"]


def test_mask_directions_never_touch_masked_weights(llama):
    name = "model.layers.0.mlp.up_proj.weight"
    theta = _theta(llama, [name])
    keep = torch.rand(theta[name].shape, generator=torch.Generator().manual_seed(0)) > 0.3
    d1, d2 = RandomDirections(DirectionSpec(), theta, keep={name: keep}).pair(name)
    assert not d1[~keep].any() and not d2[~keep].any()
    assert d1[keep].abs().min() > 0


def test_orthogonalisation_keeps_the_norm(llama):
    names = perturbed_names(llama, DirectionSpec())
    plain = RandomDirections(DirectionSpec(), _theta(llama, names))
    ortho = RandomDirections(DirectionSpec(orthogonalize=True), _theta(llama, names))
    p11, p12, p22 = plain.gram()
    o11, o12, o22 = ortho.gram()
    assert abs(p12) > 1e-6 * (p11 * p22) ** 0.5
    assert abs(o12) < 1e-5 * (o11 * o22) ** 0.5
    assert o11 == pytest.approx(p11) and o22 == pytest.approx(p22, rel=1e-5)


def test_cache_gives_the_same_directions(llama):
    plane = RandomPlane(llama, DirectionSpec(seed=1), cache=True)
    fresh = RandomPlane(llama, DirectionSpec(seed=1))
    name = plane.names[0]
    assert torch.equal(plane.basis(name)[1], fresh.basis(name)[1])
    assert plane.basis(name)[1] is plane.basis(name)[1]

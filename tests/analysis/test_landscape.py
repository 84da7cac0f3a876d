import copy
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.landscape import (
    LandscapeConfig,
    explicit_landscape,
    loss_landscape,
    parse_range,
    prepare_data,
    select_tokens,
)
from mftlab.errors import ConfigError, MaskMismatchError
from mftlab.grid import parse_grid
from mftlab.mask.maskfile import Mask
from mftlab.models.presets import _llama_config
from mftlab.models.tokenizer import build_char_tokenizer
from mftlab.training.data import Example, load_examples
from mftlab.training.evaluation import loss_sums


def _build(seed=0, dtype=torch.float32):
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(_llama_config(hidden=32, layers=2, heads=2, kv_heads=1))
    return model.to(dtype).eval()


def _shifted(model, scale, seed):
    other = copy.deepcopy(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_((torch.randn(p.shape, generator=g) * scale).to(p.dtype))
    return other


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    tokenizer = build_char_tokenizer()
    out = []
    for name, offset in (("train", 0), ("test", 7)):
        path = folder / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"prompt": f"{i}+{offset}=", "completion": str(i + offset)}) + "\n" for i in range(6))
        )
        examples, _ = load_examples(str(path), tokenizer, 64)
        out.append(prepare_data(examples, tokenizer.pad_token_id, batch_size=4))
    return out


def _params(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_options_parse_and_refuse_bad_values():
    assert parse_grid("21x11") == (21, 11) and parse_grid("9") == (9, 1)
    for bad in ("21x", "x3", "0x3", "3x3x3", "ax2"):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    assert parse_range("-1:1") == ((-1.0, 1.0), (-1.0, 1.0))
    assert parse_range("-1:2,0:0.5") == ((-1.0, 2.0), (0.0, 0.5))
    for bad in ("1:-1", "1", "a:b", "0:1,0:1,0:1"):
        with pytest.raises(ConfigError, match="--range"):
            parse_range(bad)
    with pytest.raises(ConfigError, match="--plane"):
        LandscapeConfig(plane="pca")


def test_select_tokens_takes_whole_examples_in_order():
    ex = [Example([1, 5, 6], [-100, 5, 6], [1]) for _ in range(5)]
    assert len(select_tokens(ex, 3)) == 2 and len(select_tokens(ex, None)) == 5


def test_random_plane_centre_is_the_model_loss_and_model_is_unchanged(data, tmp_path):
    train, test = data
    model = _build()
    before = _params(model)
    config = LandscapeConfig("random", (3, 3), None, DirectionSpec(seed=1))
    result = loss_landscape([model], train, test, config, tmp_path)
    assert result.train_loss.shape == (3, 3)
    assert result.train_loss[1, 1] == loss_sums(model, train.batches).loss
    assert result.test_loss[1, 1] == loss_sums(model, test.batches).loss
    assert not np.allclose(result.train_loss, result.train_loss[1, 1])
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
    with np.load(tmp_path / "landscape.npz") as npz:
        assert npz["perturbation_norm"][1, 1] == 0.0 and npz["perturbation_norm"][0, 0] > 0
        assert "len(ys)" in str(npz["layout"])
    doc = json.loads((tmp_path / "landscape.json").read_text())
    assert doc["config"]["directions"]["seed"] == 1 and doc["dtype"] == "float32"
    assert doc["data"]["train"]["hash"].startswith("blake2b:")


def test_bf16_model_is_bit_identical_after_a_run(data, tmp_path):
    train, test = data
    model = _build(dtype=torch.bfloat16)
    before = _params(model)
    loss_landscape([model], train, test, LandscapeConfig("random", (2, 2), ((-0.01, 0.01),) * 2), tmp_path)
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name


def test_three_model_plane_reproduces_each_model(data, tmp_path):
    train, test = data
    a = _build()
    b, c = _shifted(a, 0.02, 1), _shifted(a, 0.03, 2)
    expected = [loss_sums(m, train.batches).loss for m in (a, b, c)]
    config = LandscapeConfig("models", (4, 3))
    result = loss_landscape([a, lambda: b, lambda: c], train, test, config, tmp_path, labels=["FFT", "cont", "MFT"])
    for marker, loss in zip(result.markers, expected):
        assert marker["train_loss"] == pytest.approx(loss, rel=1e-5)
    assert [m["label"] for m in result.markers] == ["FFT", "cont", "MFT"]
    xs = result.xs
    coords = [(m["x"], m["y"]) for m in result.markers]
    span = max(x for x, _ in coords) - min(x for x, _ in coords)
    assert xs[0] == pytest.approx(min(x for x, _ in coords) - 0.2 * span)
    assert result.train_loss.shape == (3, 4)


def test_model_plane_refuses_wrong_count(data, tmp_path):
    with pytest.raises(ConfigError, match="exactly 3"):
        loss_landscape([_build()], *data, LandscapeConfig("models", (3, 3)), tmp_path)


class _Bias(torch.nn.Module):
    """logits = p (3 classes) everywhere; every label is class 0, so loss = logsumexp(p) - p[0]."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(3))

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.p.expand(*input_ids.shape, 3))


def test_non_square_grid_is_oriented_as_documented(tmp_path):
    examples = [Example([1, 0, 0, 0], [-100, 0, 0, 0], [1])]
    batch = prepare_data(examples, pad_id=0)
    model = _Bias()
    u = {"p": torch.tensor([0.0, 1.0, 0.0])}
    v = {"p": torch.tensor([0.0, 0.0, 2.0])}
    xs, ys = (-1.0, 0.0, 1.0, 2.5), (-0.5, 0.5, 1.0)
    result = explicit_landscape(model, u, v, train=batch, test=batch, xs=xs, ys=ys, out_dir=tmp_path)
    assert result.train_loss.shape == (len(ys), len(xs))
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            expected = math.log(1 + math.exp(x) + math.exp(2 * y))
            assert result.train_loss[j, i] == pytest.approx(expected, rel=1e-6)
    assert not torch.any(model.p)


def test_resume_computes_only_missing_points_and_refuses_other_settings(data, tmp_path):
    train, test = data
    model = _build()
    config = LandscapeConfig("random", (3, 2), None, DirectionSpec(seed=2))
    full = loss_landscape([model], train, test, config, tmp_path / "full")
    out = tmp_path / "part"
    loss_landscape([model], train, test, config, out)
    shard = out / "landscape.points-0.jsonl"
    lines = shard.read_text().splitlines()
    shard.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # as if killed while writing point 4
    os.remove(out / "landscape.json")
    with pytest.raises(ConfigError, match="--resume"):
        loss_landscape([model], train, test, config, out)
    other = LandscapeConfig("random", (3, 2), None, DirectionSpec(seed=3))
    with pytest.raises(ConfigError, match="seed"):
        loss_landscape([model], train, test, other, out, resume=True)
    resumed = loss_landscape([model], train, test, config, out, resume=True)
    assert resumed.computed == len(lines) - 3
    np.testing.assert_array_equal(resumed.train_loss, full.train_loss)
    np.testing.assert_array_equal(resumed.test_loss, full.test_loss)


def test_mask_directions_check_the_model(data, tmp_path):
    model = _build()
    name = "model.layers.0.mlp.up_proj.weight"
    weight = dict(model.named_parameters())[name]
    keep = torch.rand(weight.shape, generator=torch.Generator().manual_seed(0)) > 0.5
    mask = Mask.from_keep({name: keep}, {name: weight.detach()})
    result = loss_landscape([model], *data, LandscapeConfig("random", (2, 1)), tmp_path / "ok", mask_directions=mask)
    assert result.train_loss.shape == (1, 2)
    with pytest.raises(MaskMismatchError, match="--force"):
        loss_landscape(
            [_build(seed=9)], *data, LandscapeConfig("random", (2, 1)), tmp_path / "bad", mask_directions=mask
        )

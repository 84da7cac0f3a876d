import pytest

from mftlab.errors import TargetError
from mftlab.mft.targeting import TargetSpec, layer_index, parse_layers, resolve_targets


def names(model, *args):
    return [t.param_name for t in resolve_targets(model, TargetSpec.parse(*args))]


def test_all_linear_excludes_output_head(tiny_llama):
    found = names(tiny_llama, "all-linear")
    assert len(found) == 2 * 7 and "lm_head.weight" not in found


def test_suffix_layers_exclude_and_regex(tiny_llama):
    assert names(tiny_llama, "q_proj,v_proj", "1") == [
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.self_attn.v_proj.weight",
    ]
    assert len(names(tiny_llama, "all-linear", None, "mlp.down_proj")) == 12
    assert names(tiny_llama, r"re:.*layers\.0\.mlp\.(up|gate)_proj") == [
        "model.layers.0.mlp.gate_proj.weight",
        "model.layers.0.mlp.up_proj.weight",
    ]
    assert names(tiny_llama, "lm_head") == ["lm_head.weight"]


def test_gpt2_conv1d_targets_keep_their_in_out_layout(tiny_gpt2):
    targets = resolve_targets(tiny_gpt2, TargetSpec.parse("c_attn", "0"))
    assert [(t.param_name, t.shape, t.kind, t.out_axis) for t in targets] == [
        ("transformer.h.0.attn.c_attn.weight", (32, 96), "conv1d", 1)
    ]


def test_parse_layers():
    assert parse_layers("0-3,20-21") == (0, 1, 2, 3, 20, 21)
    assert parse_layers("5") == (5,)
    assert parse_layers(None) is None
    assert layer_index("model.layers.12.mlp.up_proj") == 12
    assert layer_index("lm_head") is None


@pytest.mark.parametrize(
    "args, match",
    [
        (("qproj",), "target 'qproj' matches no linear module; this model has: .*q_proj"),
        (("q_proj", "8-9"), "matches nothing; this model has: .*layers 0-1"),
        (("q_proj", "7-4"), "range '7-4' is empty"),
        (("q_proj", "a-b"), "not a layer number"),
        (("re:(", None), "not a valid regular expression"),
        (("q_proj", None, "q_proj"), "matches nothing"),
    ],
)
def test_zero_matches_and_bad_specs_are_errors(tiny_llama, args, match):
    with pytest.raises(TargetError, match=match):
        resolve_targets(tiny_llama, TargetSpec.parse(*args))

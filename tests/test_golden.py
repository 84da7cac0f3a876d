"""Golden files of every released format version must load to the same bits forever."""

import os

import numpy as np
import pytest

from mftlab.mask.maskfile import load_mask

DATA = os.path.join(os.path.dirname(__file__), "data")


def golden_keep(shape):
    """The bit pattern written into the golden files (see tests/data/make_golden.py)."""
    index = np.arange(int(np.prod(shape))).reshape(shape)
    return (index * 7 + 3) % 10 != 0  # exactly every 10th weight masked, offset 1


@pytest.mark.parametrize("filename", ["golden_v1_packbits.safetensors", "golden_v1_zstd.safetensors"])
def test_golden_v1_loads_to_known_bits(filename):
    mask = load_mask(os.path.join(DATA, filename))
    assert mask.names == [
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "transformer.h.0.attn.c_attn.weight",
        "vector.weight",
    ]
    for name in mask.names:
        assert np.array_equal(mask.keep(name).numpy(), golden_keep(mask.shapes[name])), name
    assert mask.shapes["model.layers.0.self_attn.q_proj.weight"] == (7, 13)
    assert mask.shapes["vector.weight"] == (13,)
    assert mask.method["name"] == "golden"

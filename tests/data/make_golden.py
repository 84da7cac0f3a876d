"""Writes the golden v1 mask files. Run once per released format version; never regenerate v1."""

import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from test_golden import golden_keep  # noqa: E402

from mftlab.mask.maskfile import Mask, save_mask  # noqa: E402

SHAPES = {
    "model.layers.0.self_attn.q_proj.weight": (7, 13),
    "model.layers.0.mlp.down_proj.weight": (16, 24),
    "transformer.h.0.attn.c_attn.weight": (1, 37),
    "vector.weight": (13,),
}

if __name__ == "__main__":
    keep = {n: torch.from_numpy(golden_keep(s)) for n, s in SHAPES.items()}
    weights = {
        n: torch.from_numpy(np.linspace(-1, 1, int(np.prod(s)), dtype=np.float32).reshape(s)) for n, s in SHAPES.items()
    }
    mask = Mask.from_keep(keep, weights, "golden-base", {"name": "golden", "mask_ratio": 0.1})
    here = os.path.dirname(__file__)
    save_mask(mask, os.path.join(here, "golden_v1_packbits.safetensors"), codec="packbits")
    save_mask(mask, os.path.join(here, "golden_v1_zstd.safetensors"), codec="zstd")

"""Issue 10 E: the memory-lean planes give the values of the code before it (tests/data/landscape_golden.json).

The golden file was written by the previous implementation (fp32 copies of theta0, u and v) with
tests/data/make_landscape_golden.py; the same script's cases run here with the current code.
"""

import json
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "data"))
from make_landscape_golden import CASES, GOLDEN, run  # noqa: E402

with open(GOLDEN) as _f:
    EXPECTED = json.load(_f)

# fp32: the same float32 arithmetic up to rounding order. bf16: a weight whose float32 value sits
# on a rounding boundary may round to the neighbouring bf16 value, which moves a loss by ~1e-4.
TOLERANCE = {"float32": dict(rtol=2e-5, atol=1e-6), "bfloat16": dict(rtol=5e-4, atol=1e-4)}


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CASES)
def test_landscape_values_equal_the_previous_implementation(case, dtype, tmp_path):
    expected = EXPECTED[f"{case}/{dtype}"]
    got = run(case, getattr(torch, dtype), str(tmp_path))
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(got["xs"], expected["xs"], rtol=1e-6)
    np.testing.assert_allclose(got["ys"], expected["ys"], rtol=1e-6)
    for key in ("train_loss", "test_loss", "perturbation_norm"):
        np.testing.assert_allclose(got[key], expected[key], **tol, err_msg=key)
    for mine, theirs in zip(got["markers"], expected["markers"]):
        for key in ("x", "y"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-5, abs=1e-7)
        for key in ("train_loss", "test_loss"):
            assert mine[key] == pytest.approx(theirs[key], rel=tol["rtol"], abs=tol["atol"])


def test_model_plane_vertices_are_the_models_bit_for_bit(tmp_path):
    """At the three models' coordinates the written weights are exactly the models' weights (bf16)."""
    from make_landscape_golden import build, shifted

    from mftlab.analysis.landscape import set_point_
    from mftlab.analysis.planes import ModelPlane

    a = build(0, torch.bfloat16)
    b, c = shifted(a, 0.02, 1), shifted(a, 0.03, 2)
    before = {n: p.detach().clone() for n, p in a.named_parameters()}
    plane = ModelPlane(a, b, c)
    params = dict(a.named_parameters())
    assert all(plane.pristine(n).dtype == torch.bfloat16 for n in plane.names)  # no fp32 copy kept
    for model, (x, y) in zip((a, b, c), plane.model_coords):
        set_point_(params, plane, x, y)
        for name, p in model.named_parameters():
            assert torch.equal(params[name], p), name
    for name in plane.names:
        params[name].data.copy_(plane.pristine(name))
    assert all(torch.equal(p, before[n]) for n, p in a.named_parameters())

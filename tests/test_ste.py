"""The straight-through estimator: gradients pinned against the analytic value (float64)."""

import torch
from torch import nn

from mftlab.mft.masked_layer import MaskedLinear
from mftlab.mft.ste import masked_matmul


def _setup(kind, seed=0):
    g = torch.Generator().manual_seed(seed)
    out_f, in_f = 5, 7
    shape = (out_f, in_f) if kind == "linear" else (in_f, out_f)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    b = torch.randn(out_f, generator=g, dtype=torch.float64)
    keep = torch.rand(shape, generator=g) > 0.3
    scores = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(3, 4, in_f, generator=g, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 4, out_f, generator=g, dtype=torch.float64)
    return w, b, keep, scores, x, upstream


def test_linear_gradient_matches_analytic_value():
    w, b, keep, scores, x, gy = _setup("linear")
    y = masked_matmul(x, w, b, scores, keep, kind="linear")
    w_eff = w * keep
    assert torch.equal(y, torch.nn.functional.linear(x, w_eff, b))
    (y * gy).sum().backward()
    x2, g2 = x.detach().reshape(-1, 7), gy.reshape(-1, 5)
    expected_scores = (g2.t() @ x2) * w  # dL/dW_eff ⊙ W
    assert torch.allclose(scores.grad, expected_scores, rtol=0, atol=1e-12)
    assert torch.allclose(x.grad, (g2 @ w_eff).reshape(x.shape), rtol=0, atol=1e-12)


def test_conv1d_gradient_matches_analytic_value():
    w, b, keep, scores, x, gy = _setup("conv1d")
    y = masked_matmul(x, w, b, scores, keep, kind="conv1d")
    w_eff = w * keep  # (in, out)
    assert torch.allclose(y, x @ w_eff + b, atol=1e-12)
    (y * gy).sum().backward()
    x2, g2 = x.detach().reshape(-1, 7), gy.reshape(-1, 5)
    assert torch.allclose(scores.grad, (x2.t() @ g2) * w, rtol=0, atol=1e-12)
    assert torch.allclose(x.grad, (g2 @ w_eff.t()).reshape(x.shape), rtol=0, atol=1e-12)


def test_ste_equals_autograd_through_identity_mask():
    """The STE gradient equals autograd's gradient of W * (keep + s - s.detach()) at s."""
    w, b, keep, scores, x, gy = _setup("linear", seed=1)
    masked_matmul(x, w, b, scores, keep, kind="linear").backward(gy)
    s2 = scores.detach().clone().requires_grad_(True)
    m = keep.double() + s2 - s2.detach()
    torch.nn.functional.linear(x.detach(), w * m, b).backward(gy)
    assert torch.allclose(scores.grad, s2.grad, rtol=0, atol=1e-12)


def test_masked_linear_keeps_base_frozen_and_saves_no_full_weight():
    base = nn.Linear(7, 5).double()
    before = base.weight.detach().clone()
    layer = MaskedLinear(base, "linear", torch.zeros(5, 7, dtype=torch.float64), "w")
    layer.set_keep(torch.rand(5, 7, generator=torch.Generator().manual_seed(0)) > 0.5)
    x = torch.randn(2, 7, dtype=torch.float64)
    y = layer(x)
    saved = y.grad_fn.saved_tensors
    # x, the weight itself (same storage) and the bool keep: no full-size W * keep.
    assert any(t.data_ptr() == base.weight.data_ptr() for t in saved)
    assert {t.dtype for t in saved} == {torch.float64, torch.bool}
    y.sum().backward()
    assert base.weight.grad is None and layer.mask_scores.grad is not None
    assert torch.equal(base.weight, before)

"""The straight-through estimator (STE) of Mask Fine-Tuning, as one autograd function.

Forward, for a frozen weight W, a binary keep-mask m = v(scores) (1 = kept) and input x:

    W_eff = W ⊙ m
    y     = x W_effᵀ + b          (nn.Linear, W is [out, in])
    y     = x W_eff  + b          (transformers Conv1D, W is [in, out])

v (top-k or threshold of the scores) has zero gradient almost everywhere, so the STE treats it
as the identity in the backward pass:

    dL/dx      = dL/dy · W_eff            (Linear)  or  dL/dy · W_effᵀ  (Conv1D)
    dL/dW_eff  = (dL/dy)ᵀ · x             (Linear)  or  xᵀ · dL/dy      (Conv1D)
    dL/dscores = dL/dW_eff ⊙ W            (the gradient the masked weight would get, times W)

Memory: `F.linear(x, W * m)` under autograd keeps the full-size product W * m alive until the
backward pass (CONTRIBUTING.md, style rule 4). Here only x, a reference to W (the frozen parameter itself, no
copy) and the boolean m (1 byte per weight) are saved; W ⊙ m is recomputed in each pass and
freed at once. The gradient of the scores is accumulated in fp32 before it is cast to the
scores' dtype. The frozen bias gets a gradient only when it requires one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LAYER_KINDS = ("linear", "conv1d")


def _matmul(x: torch.Tensor, w_eff: torch.Tensor, bias: torch.Tensor | None, kind: str) -> torch.Tensor:
    if kind == "linear":
        return F.linear(x, w_eff, bias)  # (..., out)
    x2 = x.reshape(-1, x.shape[-1])  # (N, in)
    y = torch.addmm(bias, x2, w_eff) if bias is not None else x2 @ w_eff  # (N, out)
    return y.reshape(*x.shape[:-1], w_eff.shape[-1])


class MaskedMatmul(torch.autograd.Function):
    """y = layer(x; W ⊙ keep) with the straight-through gradient for `scores` (see module doc)."""

    @staticmethod
    def forward(ctx, x, weight, bias, scores, keep, kind):
        ctx.kind = kind
        ctx.scores_dtype = scores.dtype
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.save_for_backward(x, weight, keep)
        return _matmul(x, weight * keep, bias, kind)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, keep = ctx.saved_tensors
        dtype = grad_out.dtype  # under autocast the output (and its gradient) is bf16
        g2 = grad_out.reshape(-1, grad_out.shape[-1])  # (N, out)
        x2 = x.reshape(-1, x.shape[-1]).to(dtype)  # (N, in)
        grad_x = grad_weight = grad_bias = grad_scores = None

        if ctx.needs_input_grad[0]:
            w_eff = (weight * keep).to(dtype)  # recomputed, freed after this line's matmul
            g_in = g2 @ w_eff if ctx.kind == "linear" else g2 @ w_eff.t()  # (N, in)
            grad_x = g_in.reshape(*x.shape).to(x.dtype)
        if ctx.needs_input_grad[3] or ctx.needs_input_grad[1]:
            g_w = g2.t() @ x2 if ctx.kind == "linear" else x2.t() @ g2  # dL/dW_eff, W's layout
            acc = torch.promote_types(g_w.dtype, torch.float32)  # at least fp32 (fp64 stays fp64)
            g_w = g_w.to(acc)
            if ctx.needs_input_grad[1]:  # only when someone trains the base weight as well
                grad_weight = (g_w * keep).to(weight.dtype)
            if ctx.needs_input_grad[3]:  # g_w is a fresh buffer: multiply in place, no new allocation
                grad_scores = g_w.mul_(weight.to(acc)).to(ctx.scores_dtype)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = g2.to(torch.promote_types(g2.dtype, torch.float32)).sum(0).to(ctx.bias_dtype)
        return grad_x, grad_weight, grad_bias, grad_scores, None, None


def masked_matmul(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    scores: torch.Tensor,
    keep: torch.Tensor,
    *,
    kind: str = "linear",
) -> torch.Tensor:
    """Apply a Linear ([out, in]) or Conv1D ([in, out]) layer with weight `weight ⊙ keep`.

    `keep` is boolean with the weight's shape; `scores` (same shape) receives the STE gradient
    dL/dW_eff ⊙ W. Shapes: x (..., in) -> (..., out).
    """
    if kind not in LAYER_KINDS:
        raise ValueError(f"kind must be one of {LAYER_KINDS}, got {kind!r}")
    return MaskedMatmul.apply(x, weight, bias, scores, keep, kind)

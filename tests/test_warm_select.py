"""Warm-started top-k gives exactly the masks of the plain selection functions, step after step."""

import pytest
import torch

from mftlab.mft.selection import keep_global, keep_tensor
from mftlab.mft.warm_select import WarmSelector


def _drift(values, g, scale):
    return {n: v + torch.randn(v.shape, generator=g) * scale for n, v in values.items()}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_plain_selection_over_many_steps(dtype):
    g = torch.Generator().manual_seed(0)
    values = {
        "a": torch.randn(37, 29, generator=g) * 0.02,
        "b": torch.randn(64, generator=g) * 0.02,
        "c": torch.randn(8, 50, generator=g) * 0.02,
    }
    tensor_sel, global_sel = WarmSelector(), WarmSelector()
    for step in range(12):
        scale = 1.0 if step == 6 else 1e-4  # step 6: a jump far outside the band -> fallback path
        values = _drift(values, g, scale)
        cast = {n: v.to(dtype) for n, v in values.items()}
        if step == 3:  # many exact ties at the cut-off
            cast["a"] = torch.zeros_like(cast["a"])
        for n, v in cast.items():
            assert torch.equal(tensor_sel.keep_tensor(n, v, 0.1), keep_tensor(v, 0.1)), (step, n)
        warm = global_sel.keep_global_group(cast, 0.1)
        plain = keep_global(cast, 0.1)
        assert all(torch.equal(warm[n], plain[n]) for n in cast), step


def test_band_is_used_after_the_first_step():
    g = torch.Generator().manual_seed(1)
    v = torch.randn(100_000, generator=g)
    sel = WarmSelector()
    sel.keep_tensor("w", v, 0.1)
    calls = []
    original = torch.kthvalue

    def spy(x, k, *a, **kw):
        calls.append(x.numel())
        return original(x, k, *a, **kw)

    torch.kthvalue = spy
    try:
        keep = sel.keep_tensor("w", v + 1e-4 * torch.randn(100_000, generator=g), 0.1)
    finally:
        torch.kthvalue = original
    assert int((~keep).sum()) == 10_000
    assert calls and max(calls) < 5_000  # selected within the band, not over all 100k

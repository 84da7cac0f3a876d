"""The chunked fp32 NLL against one cross_entropy over the fp32 copy of the logits (value and gradient)."""

import pytest
import torch
import torch.nn.functional as F

from mftlab.training.chunked_nll import chunk_rows, next_token_targets, token_nll, token_nll_and_hits
from mftlab.training.data import IGNORE_INDEX


def full_logits_nll(logits, labels):
    """The computation before chunking: shifted logits upcast whole, one cross_entropy."""
    shift = logits[:, :-1, :].float()
    return F.cross_entropy(
        shift.reshape(-1, shift.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
    )


def _case(dtype, seed=0, batch=3, width=7, vocab=50):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(batch, width, vocab, generator=g)).to(dtype).requires_grad_()
    labels = torch.randint(0, vocab, (batch, width), generator=g)
    labels[0, :3] = IGNORE_INDEX  # a prompt
    labels[1, 5:] = IGNORE_INDEX  # padding
    labels[2] = IGNORE_INDEX  # a row without answer tokens
    return logits, labels


def _grad(loss, logits):
    (grad,) = torch.autograd.grad(loss, logits)
    return grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rows", [1, 4, 5, 21, 1000])  # 4, 5: chunk boundaries inside a sequence
def test_value_and_gradient_equal_the_full_logits_computation(dtype, rows):
    logits, labels = _case(dtype)
    old = full_logits_nll(logits, labels)
    new = token_nll(logits, next_token_targets(labels), rows=rows).sum()
    assert new.dtype == torch.float32
    assert abs(new.item() - old.item()) / abs(old.item()) < 1e-6
    old_grad, new_grad = _grad(old, logits), _grad(new, logits)
    assert new_grad.dtype == dtype
    torch.testing.assert_close(new_grad, old_grad)
    assert not new_grad[:, -1].any()  # the last position predicts nothing
    assert not new_grad[2].any()  # nor does a row without labels


def test_per_token_values_and_weighted_gradient():
    logits, labels = _case(torch.float32, seed=1)
    targets = next_token_targets(labels)
    per_token = token_nll(logits, targets, rows=4)  # (B, T)
    expected = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(targets.shape)  # 0 where ignored
    torch.testing.assert_close(per_token, expected, rtol=0, atol=0)  # rows are scored alone: chunks change nothing
    weights = torch.rand(per_token.shape, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(_grad((per_token * weights).sum(), logits), _grad((expected * weights).sum(), logits))


def test_no_label_tokens_gives_zero_and_zero_gradient():
    logits, labels = _case(torch.bfloat16)
    labels[:] = IGNORE_INDEX
    nll = token_nll(logits, next_token_targets(labels), rows=2).sum()
    assert nll.item() == 0.0 == full_logits_nll(logits, labels).item()
    assert not _grad(nll, logits).any()


@pytest.mark.parametrize("rows", [1, 4, 1000])
def test_hits_are_the_argmax_of_the_fp32_copy_ties_included(rows):
    logits, labels = _case(torch.bfloat16, seed=3)
    logits = logits.detach().round()  # integer logits: many ties, resolved to the first maximum
    labels[0, 4:] = logits[0, 3:-1].float().argmax(-1)  # some hits
    targets = next_token_targets(labels)
    nll, hits = token_nll_and_hits(logits, targets, rows=rows)
    torch.testing.assert_close(nll, token_nll(logits, targets, rows=2), rtol=0, atol=0)
    expected = (logits.float().argmax(-1) == targets) & (targets != IGNORE_INDEX)
    assert torch.equal(hits, expected) and 0 < int(hits.sum())


def test_chunk_rows_follow_the_vocabulary():
    assert chunk_rows(32000) * 32000 <= 1 << 24 < (chunk_rows(32000) + 1) * 32000
    assert chunk_rows(10**9) == 1

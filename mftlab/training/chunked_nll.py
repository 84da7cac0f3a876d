"""Next-token negative log-likelihood without an fp32 copy of the whole logits.

The log-softmax is taken in fp32 (as the loss should be, even under bf16), but one chunk of rows
at a time, so the memory beyond the model's own (B, T, V) logits is a few fp32 chunks of
chunk_rows(V) x V x 4 bytes (64 MiB each: two in the forward, up to four in the backward, whatever
B, T and V), instead of two or three B x T x V x 4-byte copies. With a gradient the logits are kept for the
backward and their gradient (B x T x V, model dtype) is made there, as the lm_head needs it anyway.

Why a custom autograd function rather than plain autograd over chunks or a checkpoint per chunk:
measured peak memory beyond the logits, forward + backward, 8 x 512 x 32000 bf16 logits on CPU
(whose gradient alone is 250 MiB): one cross_entropy over the fp32 copy 1501 MiB; plain chunks
609 MiB (autograd keeps every chunk's fp32 log-softmax for the backward: the whole fp32 copy
again); torch.utils.checkpoint per chunk 578 MiB and about twice the time (the chunks' gradients
are all held until the split's backward joins them, and the forward is repeated); this function
about 400-500 MiB: the logits' gradient plus a few fp32 chunks. It keeps only the logits (which the
backward must read anyway) and writes each chunk's gradient straight into one buffer. The backward
runs cross_entropy's own backward on each chunk, so the gradient equals the full-logits one bit for
bit in fp32 (training follows the same trajectory as before the chunking).

Every position is scored (an ignored one gives 0): taking only the label positions would need
their number on the host, a synchronisation, to save a softmax that costs little next to the
lm_head's matmul that made the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mftlab.training.data import IGNORE_INDEX

CHUNK_ELEMENTS = 1 << 24  # logits per fp32 chunk (64 MiB); at most two such chunks are alive at once


def chunk_rows(vocab: int) -> int:
    """Rows (token positions) per chunk for a vocabulary of `vocab`: about CHUNK_ELEMENTS logits."""
    return max(1, CHUNK_ELEMENTS // vocab)


def next_token_targets(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) labels -> (B, T) targets: position t is scored on labels[:, t + 1]; the last is ignored.

    Aligned with the logits rather than shifting the logits, so that no (B, T-1, V) copy is made.
    """
    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


class _ChunkedNLL(torch.autograd.Function):
    """Per-row cross-entropy -log softmax(x)[t] in fp32, chunk by chunk; 0 where t is IGNORE_INDEX.

    Backward: d nll / d x = softmax(x) - onehot(t) (0 on ignored rows), times the incoming
    gradient of the row: F.cross_entropy's own backward, run one chunk at a time on the saved
    logits (a recomputed log-softmax costs less than keeping them all in fp32).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, rows: int) -> torch.Tensor:  # (N, V), (N,)
        out = torch.empty(logits.shape[0], dtype=torch.float32, device=logits.device)  # (N,)
        for start in range(0, logits.shape[0], rows):
            stop = start + rows
            out[start:stop] = F.cross_entropy(
                logits[start:stop].float(), targets[start:stop], ignore_index=IGNORE_INDEX, reduction="none"
            )
        ctx.save_for_backward(logits, targets)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # (N,) fp32
        logits, targets = ctx.saved_tensors
        grad = torch.empty_like(logits)  # (N, V), model dtype: the gradient the lm_head receives anyway
        for start in range(0, logits.shape[0], ctx.rows):
            stop = start + ctx.rows
            t = targets[start:stop]
            # cross_entropy's own backward on the chunk (its log-softmax recomputed): the same kernels and
            # roundings as the full-logits loss, so fp32 training follows the trajectory it followed
            # before, bit for bit (a hand-written softmax - onehot rounds differently and moved every
            # number of the demo). Up to four fp32 chunks are alive here, never the whole logits.
            chunk = logits[start:stop].detach().float().requires_grad_(True)  # (C, V)
            with torch.enable_grad():
                nll = F.cross_entropy(chunk, t, ignore_index=IGNORE_INDEX, reduction="none")  # (C,)
            (g,) = torch.autograd.grad(nll, chunk, grad_out[start:stop])
            grad[start:stop].copy_(g)
        return grad, None, None


def token_nll(logits: torch.Tensor, targets: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """(B, T, V) logits, (B, T) targets (see `next_token_targets`) -> (B, T) fp32 NLL in nats.

    0 at ignored positions; differentiable; no host synchronisation. `rows`: rows per chunk
    (default `chunk_rows(V)`).
    """
    vocab = logits.shape[-1]
    nll = _ChunkedNLL.apply(logits.reshape(-1, vocab), targets.reshape(-1), rows or chunk_rows(vocab))  # (B*T,)
    return nll.view(targets.shape)


@torch.no_grad()
def token_nll_and_hits(
    logits: torch.Tensor, targets: torch.Tensor, rows: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Evaluation's pass: (B, T) fp32 NLL as `token_nll` and (B, T) bool "the argmax is the target".

    The argmax is taken on the same fp32 chunk (the upcast is exact, so it picks the token the
    model-dtype logits would), in one pass over the logits.
    """
    vocab = logits.shape[-1]
    flat, flat_targets = logits.reshape(-1, vocab), targets.reshape(-1)  # (N, V), (N,)
    rows = rows or chunk_rows(vocab)
    nll = torch.empty(flat.shape[0], dtype=torch.float32, device=flat.device)
    hits = torch.empty(flat.shape[0], dtype=torch.bool, device=flat.device)
    for start in range(0, flat.shape[0], rows):
        stop = start + rows
        x, t = flat[start:stop].float(), flat_targets[start:stop]  # (C, V), (C,)
        nll[start:stop] = F.cross_entropy(x, t, ignore_index=IGNORE_INDEX, reduction="none")
        hits[start:stop] = (x.argmax(-1) == t) & (t != IGNORE_INDEX)
    return nll.view(targets.shape), hits.view(targets.shape)

"""Pruning criteria as per-weight scores (lower = pruned first), for baseline masks and comparisons.

- `magnitude`: |W|.
- `wanda` (Sun et al. 2023): |W_ij| * ||X_j||_2, where X_j is input feature j of the layer over
  every non-padding calibration token. Forward hooks add each batch's per-feature sums of squares
  (fp32) under `torch.no_grad`; no activation is kept. A Linear weight is [out, in] (feature j is
  column j); a transformers Conv1D weight is [in, out] (feature j is row j).
- `snip` (first-order saliency): |W_ij * dL/dW_ij|, L the token-weighted mean next-token loss over
  the answer tokens of all calibration batches (the trainer's loss). One backward per batch of
  nll_sum / total_label_tokens, so the summed gradient is exactly dL/dW; it is what the STE gives
  the MFT scores at step 0 (mftlab.mft.ste), up to the sign.

Memory: one fp32 value per targeted weight (the score being built); SNIP's per-batch gradient is
added to it by a post-accumulate hook and freed at once, so gradients never pile up.
"""

from __future__ import annotations

from typing import Callable

import torch

from mftlab.errors import ConfigError, TargetError
from mftlab.mft.calibration import Calibration
from mftlab.mft.targeting import Target, is_maskable
from mftlab.options_meta import unknown_choice
from mftlab.training.evaluation import training_nll

CRITERIA = ("magnitude", "wanda", "snip")
NEEDS_DATA = ("wanda", "snip")


def _modules(model: torch.nn.Module, targets: list[Target]) -> dict[str, torch.nn.Module]:
    """param_name -> module, checking each is an nn.Linear or transformers Conv1D."""
    found = {}
    for t in targets:
        module = model.get_submodule(t.module_name)
        if not is_maskable(module):
            raise TargetError(
                f"module '{t.module_name}' is a {type(module).__name__}, not an nn.Linear or Conv1D; "
                "pruning criteria score Linear / Conv1D weights only (choose other --targets)"
            )
        found[t.param_name] = module
    return found


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def magnitude_scores(model: torch.nn.Module, targets: list[Target]) -> dict[str, torch.Tensor]:
    """|W| in fp32, per targeted weight."""
    return {n: m.weight.detach().float().abs() for n, m in _modules(model, targets).items()}


def _feature_sq_sums(x: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """(in,) fp32 sums over tokens of x**2, counting only `valid` tokens when x is (B, T, in)."""
    rows = x.reshape(-1, x.shape[-1])  # (N, in), a view
    squares = rows.float().square() if rows.dtype != torch.float32 else rows.square()  # the one copy
    if valid is None or x.shape[:-1] != valid.shape:  # no padding, or routed tokens (N, in)
        return squares.sum(0)
    return squares.t().mv(valid.reshape(-1).to(squares.dtype))  # padding rows weighted 0


@torch.no_grad()
def input_sq_sums(
    model: torch.nn.Module, targets: list[Target], calibration: Calibration, progress=None
) -> dict[str, torch.Tensor]:
    """param_name -> (in_features,) fp32 sum over non-padding tokens of each input feature squared.

    Consecutive modules that read the same input tensor (q/k/v, gate/up) share one computation;
    only that one input is referenced between hooks (by identity, so its memory cannot be reused).
    """
    modules = _modules(model, targets)
    kinds = {t.param_name: t.kind for t in targets}
    sums = {
        n: torch.zeros(m.weight.shape[1 if kinds[n] == "linear" else 0], dtype=torch.float32, device=m.weight.device)
        for n, m in modules.items()
    }
    current: dict = {}

    def hook(name: str) -> Callable:
        def record(_module, inputs, _output):
            x = inputs[0]  # (B, T, in), or (N, in) when a layer sees routed tokens
            if current["last"] is None or current["last"][0] is not x:  # q/k/v (gate/up) run back to back
                current["last"] = (x, _feature_sq_sums(x, current["valid"]))
            sums[name].add_(current["last"][1])

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    was_training = model.training
    model.eval()
    device = _device(model)
    try:
        for batch in _calibration_batches(calibration, progress):
            batch = batch.to(device)
            padded = not bool(batch.attention_mask.all())
            current.update(valid=batch.attention_mask if padded else None, last=None)  # (B, T)
            model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
            current["last"] = None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return sums


def _calibration_batches(calibration: Calibration, progress=None):
    """The calibration batches; `progress(tokens_seen, tokens)` after each."""
    seen = 0
    for batch in calibration.batches:
        yield batch
        seen += int(batch.attention_mask.sum())
        if progress is not None:
            progress(seen, calibration.tokens)


def wanda_scores(
    model: torch.nn.Module, targets: list[Target], calibration: Calibration, progress=None
) -> dict[str, torch.Tensor]:
    """|W_ij| * ||X_j||_2 in fp32 (see module doc), in each weight's own layout."""
    sums = input_sq_sums(model, targets, calibration, progress)
    scores = {}
    for t in targets:
        norms = sums.pop(t.param_name).sqrt_()  # (in,)
        w = model.get_submodule(t.module_name).weight.detach()
        shaped = norms.view(1, -1) if t.kind == "linear" else norms.view(-1, 1)  # Linear [out, in]; Conv1D [in, out]
        scores[t.param_name] = w.float().abs().mul_(shaped)
    return scores


def snip_scores(
    model: torch.nn.Module, targets: list[Target], calibration: Calibration, progress=None
) -> dict[str, torch.Tensor]:
    """|W * dL/dW| in fp32 with L the token-weighted answer-token loss over all calibration batches."""
    if calibration.label_tokens == 0:
        raise ConfigError(
            f"calibration data '{calibration.config.data}' has no answer tokens within --max-tokens "
            f"{calibration.config.max_tokens}; SNIP needs a loss: raise --max-tokens or use other data"
        )
    modules = _modules(model, targets)
    weights = {n: m.weight for n, m in modules.items()}
    grads = {n: torch.zeros(w.shape, dtype=torch.float32, device=w.device) for n, w in weights.items()}
    flags = {p: p.requires_grad for p in model.parameters()}
    handles = []

    def add(name: str) -> Callable:
        def accumulate(param):
            grads[name].add_(param.grad)  # fp32 accumulation whatever the weight's dtype
            param.grad = None

        return accumulate

    was_training = model.training
    model.eval()  # no dropout: the saliency of the model as it is used
    device = _device(model)
    try:
        for p in flags:
            p.requires_grad_(False)
        for n, w in weights.items():
            w.requires_grad_(True)
            w.grad = None
            handles.append(w.register_post_accumulate_grad_hook(add(n)))
        for batch in _calibration_batches(calibration, progress):
            (training_nll(model, batch.to(device)) / calibration.label_tokens).backward()
    finally:
        for h in handles:
            h.remove()
        for p, flag in flags.items():
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)
    return {n: g.mul_(weights[n].detach().float()).abs_() for n, g in grads.items()}


def criterion_scores(
    kind: str, model: torch.nn.Module, targets: list[Target], calibration: Calibration | None = None, progress=None
) -> dict[str, torch.Tensor]:
    """Scores of one criterion (lower = pruned first); wanda and snip need `calibration` and report
    `progress(tokens_seen, tokens)` over it."""
    if kind not in CRITERIA:
        raise ConfigError(f"criterion '{kind}' {unknown_choice(CRITERIA)}")
    if kind in NEEDS_DATA and calibration is None:
        raise ConfigError(
            f"--kind {kind} needs calibration data: pass --data FILE (e.g. the training data) "
            "and optionally --max-tokens N"
        )
    if kind == "magnitude":
        return magnitude_scores(model, targets)
    if kind == "wanda":
        return wanda_scores(model, targets, calibration, progress)
    return snip_scores(model, targets, calibration, progress)

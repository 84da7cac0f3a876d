"""Time terms of a plan: FLOPs per token over peak x MFU, plus the memory-bound per-step work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mftlab.grid import parse_grid
from mftlab.mft.targeting import Target
from mftlab.models.shapes import ModelShape
from mftlab.plan.memory import lora_params, master_weights, trainable_values
from mftlab.plan.terms import GPU, SCORE_BYTES, Term, fmt_count

if TYPE_CHECKING:
    from mftlab.plan.planner import PlanConfig


def _backward_terms(c: "PlanConfig", m: ModelShape, targets: list[Target], first: int, fwd: float) -> list[Term]:
    """Backward FLOPs per token: fft twice the forward; mask / lora the input grads from layer `first` on."""
    if c.method == "fft":
        return [Term("backward", f"2 x forward = 2 x {fmt_count(fwd)}", 2 * fwd, "FLOP/token")]
    s, h = c.seq_len, m.hidden
    N_bwd = sum(m.layer_matmul_params[first:]) + (m.matmul_params - sum(m.layer_matmul_params))  # + the head
    L_bwd = m.layers - first
    terms = [
        Term(
            "backward (input grads)",
            f"2 x N_mm(layers {first}+ and head) + 8 x {L_bwd} x S x h = 2 x {fmt_count(N_bwd)} + "
            f"8 x {L_bwd} x {s} x {h}",
            2 * N_bwd + 8 * L_bwd * s * h,
            "FLOP/token",
        )
    ]
    if c.method == "mask":
        T = sum(t.numel for t in targets)
        terms.append(Term("backward (score grads)", f"2 x T = 2 x {fmt_count(T)}", 2 * T, "FLOP/token"))
    else:
        A = lora_params(c, targets)
        terms.append(Term("LoRA adapters (fwd + bwd)", f"6 x {fmt_count(A)}", 6 * A, "FLOP/token"))
    return terms


def _recompute_term(c: "PlanConfig", m: ModelShape, first: int) -> Term:
    """Checkpointing runs the forward of the layers from `first` on a second time."""
    s, h = c.seq_len, m.hidden
    L_bwd = m.layers - first
    return Term(
        "recompute (checkpointing)",
        f"2 x N_mm(layers {first}+) + 4 x {L_bwd} x S x h = 2 x "
        f"{fmt_count(sum(m.layer_matmul_params[first:]))} + 4 x {L_bwd} x {s} x {h}",
        2 * sum(m.layer_matmul_params[first:]) + 4 * L_bwd * s * h,
        "FLOP/token",
    )


def _optimizer_terms(c: "PlanConfig", m: ModelShape, targets: list[Target], gpu: GPU, b_w: int) -> list[Term]:
    """The memory-bound work of each optimizer step: the mask selection (mask) and the AdamW update."""
    bandwidth = f"{gpu.bandwidth / 1e12:g}e12"
    terms = []
    if c.method == "mask":
        T, b_s = sum(t.numel for t in targets), SCORE_BYTES[c.score_dtype]
        terms.append(
            Term(
                "mask selection per step",
                f"3 x T x b_s / BW = 3 x {fmt_count(T)} x {b_s} / {bandwidth}",
                3 * T * b_s / gpu.bandwidth,
                "s",
            )
        )
    trainable, b_t = trainable_values(c, m, targets, b_w)
    local = trainable / (c.gpus if c.sharding != "none" else 1)
    if master_weights(c, b_t):  # fp32 master: AdamW on fp32, then one master -> 16-bit copy (4 + 2 B)
        formula = f"(7 x 4 + 6) B x {fmt_count(local)} / {bandwidth} (fp32 master, then the 16-bit copy)"
        terms.append(Term("AdamW update per step", formula, 34 * local / gpu.bandwidth, "s"))
    else:
        formula = f"7 x {fmt_count(local)} x {b_t} B / {bandwidth}"
        terms.append(Term("AdamW update per step", formula, 7 * local * b_t / gpu.bandwidth, "s"))
    return terms


def train_time(
    c: "PlanConfig", m: ModelShape, targets: list[Target], *, gpu: GPU, peak: float, b_w: int, first: int
) -> list[Term]:
    """FLOPs per token of a training step (backward from layer `first`), its compute time and memory-bound work."""
    forward = forward_term(c, m, counted=True)
    terms = [forward] + _backward_terms(c, m, targets, first, forward.value)
    if c.gradient_checkpointing:
        terms.append(_recompute_term(c, m, first))
    per_token = sum(t.value for t in terms)
    terms.append(
        Term("total per token", " + ".join(fmt_count(t.value) for t in terms), per_token, "FLOP/token", counted=False)
    )
    g, tokens_step = c.gpus, c.batch_size * c.seq_len
    compute = tokens_step * per_token / (g * peak * c.mfu)
    terms.append(
        Term("tokens per step", f"batch x S = {c.batch_size} x {c.seq_len}", tokens_step, "tokens", counted=False)
    )
    terms.append(
        Term(
            "compute per step",
            f"{tokens_step} x {fmt_count(per_token)} / ({g} x {peak / 1e12:g}e12 x {c.mfu})",
            compute,
            "s",
        )
    )
    return terms + _optimizer_terms(c, m, targets, gpu, b_w)


def landscape_time(c: "PlanConfig", m: ModelShape, *, gpu: GPU, peak: float, perturbed: int, b_w: int) -> list[Term]:
    nx, ny = parse_grid(c.grid)
    points = nx * ny
    forward = forward_term(c, m)
    fwd = forward.value
    tokens = 2 * c.landscape_tokens
    eval_s = tokens * fwd / (peak * c.mfu)
    # Bytes moved per perturbed weight and point: read what the plane holds, write the weight, and
    # the fp32 chunk (write, re-read after the cast, norm): 16 B; a regenerated direction ~12 B.
    per_weight = {"random": 2 * b_w + 16 + 2 * 12, "models": 4 * b_w + 16, "line": 3 * b_w + 16}[c.plane]
    update_s = perturbed * per_weight / gpu.bandwidth
    return [
        Term("grid points", f"{nx} x {ny}", points, "points", counted=False),
        forward,
        Term(
            "evaluation per point",
            f"2 subsets x {c.landscape_tokens} tokens x {fmt_count(fwd)} / ({peak / 1e12:g}e12 x {c.mfu})",
            eval_s,
            "s",
        ),
        Term(
            "weight update per point",
            f"{fmt_count(perturbed)} x {per_weight} B ({c.plane} plane) / {gpu.bandwidth / 1e12:g}e12",
            update_s,
            "s",
        ),
    ]


def forward_term(c: "PlanConfig", m: ModelShape, counted: bool = False) -> Term:
    """Forward FLOPs per token: every matmul weight twice, plus attention's 4 x L x S x h (`counted` in a
    training step's total; the landscape and eval show it as the intermediate it is there)."""
    s, L, h = c.seq_len, m.layers, m.hidden
    return Term(
        "forward",
        f"2 x N_mm + 4 x L x S x h = 2 x {fmt_count(m.matmul_params)} + 4 x {L} x {s} x {h}",
        2 * m.matmul_params + 4 * L * s * h,
        "FLOP/token",
        counted=counted,
    )


def eval_time(c: "PlanConfig", m: ModelShape, gpu: GPU, peak: float) -> list[Term]:
    """Forward FLOPs per token of `mftlab eval` (teacher-forced loss; generation is not planned)."""
    return [forward_term(c, m)]

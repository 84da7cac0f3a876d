"""Time terms of a plan: FLOPs per token over peak x MFU, plus the memory-bound per-step work."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mftlab.grid import parse_grid
from mftlab.mft.targeting import Target
from mftlab.models.shapes import ModelShape
from mftlab.plan.memory import master_weights
from mftlab.plan.terms import GPU, SCORE_BYTES, Term, fmt_count

if TYPE_CHECKING:
    from mftlab.plan.planner import PlanConfig


def train_time(
    c: "PlanConfig", m: ModelShape, targets: list[Target], gpu: GPU, peak: float, b_w: int, first: int
) -> list[Term]:
    s, h, L, g = c.seq_len, m.hidden, m.layers, c.gpus
    N_mm = m.matmul_params
    head_mm = N_mm - sum(m.layer_matmul_params)
    N_bwd = sum(m.layer_matmul_params[first:]) + head_mm
    L_bwd = L - first
    T = sum(t.numel for t in targets)
    fwd = 2 * N_mm + 4 * L * s * h
    terms = [
        Term("forward", f"2 x N_mm + 4 x L x S x h = 2 x {fmt_count(N_mm)} + 4 x {L} x {s} x {h}", fwd, "FLOP/token")
    ]
    if c.method == "fft":
        terms.append(Term("backward", f"2 x forward = 2 x {fmt_count(fwd)}", 2 * fwd, "FLOP/token"))
    else:
        terms.append(
            Term(
                "backward (input grads)",
                f"2 x N_mm(layers {first}+ and head) + 8 x {L_bwd} x S x h = 2 x {fmt_count(N_bwd)} + "
                f"8 x {L_bwd} x {s} x {h}",
                2 * N_bwd + 8 * L_bwd * s * h,
                "FLOP/token",
            )
        )
        if c.method == "mask":
            terms.append(Term("backward (score grads)", f"2 x T = 2 x {fmt_count(T)}", 2 * T, "FLOP/token"))
        else:
            A = sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets)
            terms.append(Term("LoRA adapters (fwd + bwd)", f"6 x {fmt_count(A)}", 6 * A, "FLOP/token"))
    if c.gradient_checkpointing:
        rec = 2 * sum(m.layer_matmul_params[first:]) + 4 * L_bwd * s * h
        terms.append(
            Term(
                "recompute (checkpointing)",
                f"2 x N_mm(layers {first}+) + 4 x {L_bwd} x S x h = 2 x "
                f"{fmt_count(sum(m.layer_matmul_params[first:]))} + 4 x {L_bwd} x {s} x {h}",
                rec,
                "FLOP/token",
            )
        )
    per_token = sum(t.value for t in terms)
    terms.append(
        Term("total per token", " + ".join(fmt_count(t.value) for t in terms), per_token, "FLOP/token", counted=False)
    )
    tokens_step = c.batch_size * s
    compute = tokens_step * per_token / (g * peak * c.mfu)
    terms.append(Term("tokens per step", f"batch x S = {c.batch_size} x {s}", tokens_step, "tokens", counted=False))
    terms.append(
        Term(
            "compute per step",
            f"{tokens_step} x {fmt_count(per_token)} / ({g} x {peak / 1e12:g}e12 x {c.mfu})",
            compute,
            "s",
        )
    )
    if c.method == "mask":
        b_s = SCORE_BYTES[c.score_dtype]
        terms.append(
            Term(
                "mask selection per step",
                f"3 x T x b_s / BW = 3 x {fmt_count(T)} x {b_s} / {gpu.bandwidth / 1e12:g}e12",
                3 * T * b_s / gpu.bandwidth,
                "s",
            )
        )
        trainable, b_t = T, SCORE_BYTES[c.score_dtype]
    elif c.method == "lora":
        trainable, b_t = sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets), 4
    else:
        trainable, b_t = m.params, b_w
    local = trainable / (g if c.sharding != "none" else 1)
    if master_weights(c, b_t):  # fp32 master: AdamW on fp32, then one master -> 16-bit copy (4 + 2 B)
        terms.append(
            Term(
                "AdamW update per step",
                f"(7 x 4 + 6) B x {fmt_count(local)} / {gpu.bandwidth / 1e12:g}e12 (fp32 master, then the 16-bit copy)",
                34 * local / gpu.bandwidth,
                "s",
            )
        )
    else:
        terms.append(
            Term(
                "AdamW update per step",
                f"7 x {fmt_count(local)} x {b_t} B / {gpu.bandwidth / 1e12:g}e12",
                7 * local * b_t / gpu.bandwidth,
                "s",
            )
        )
    return terms


def landscape_time(c: "PlanConfig", m: ModelShape, gpu: GPU, peak: float, perturbed: int, b_w: int) -> list[Term]:
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


def forward_term(c: "PlanConfig", m: ModelShape) -> Term:
    """Forward FLOPs per token: every matmul weight twice, plus attention's 4 x L x S x h."""
    s, L, h = c.seq_len, m.layers, m.hidden
    return Term(
        "forward",
        f"2 x N_mm + 4 x L x S x h = 2 x {fmt_count(m.matmul_params)} + 4 x {L} x {s} x {h}",
        2 * m.matmul_params + 4 * L * s * h,
        "FLOP/token",
        counted=False,
    )


def eval_time(c: "PlanConfig", m: ModelShape, gpu: GPU, peak: float) -> list[Term]:
    """Forward FLOPs per token of `mftlab eval` (teacher-forced loss; generation is not planned)."""
    return [forward_term(c, m)]

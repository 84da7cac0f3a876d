"""Memory terms of a plan (per process): training under DDP or FSDP2, and landscapes per plane.

The layout follows what the code holds (see `mftlab.plan.planner` for the symbols and the contract
in the module docstring there). Every function returns `Term`s; `plan()` sums the counted ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mftlab.grid import parse_grid
from mftlab.mft.targeting import Target
from mftlab.models.shapes import ModelShape
from mftlab.plan.terms import GIB, SCORE_BYTES, Term, fmt_bytes, fmt_count
from mftlab.training.chunked_nll import CHUNK_ELEMENTS

if TYPE_CHECKING:
    from mftlab.plan.planner import PlanConfig

# What the landscape code holds (mftlab.analysis.planes): a random plane caches its two fp32
# directions up to this many perturbed weights; point weights are computed in fp32 chunks.
AUTO_CACHE_LIMIT = 1 << 27
CHUNK = {"cpu": 1 << 20}
GPU_CHUNK = 1 << 24


def dtype_name(c: "PlanConfig", m: ModelShape) -> str:
    return m.dtype if c.dtype == "auto" else c.dtype


def master_weights(c: "PlanConfig", trainable_bytes: int) -> bool:
    """fp32 master copies are kept for 16-bit trainable values unless --pure-bf16."""
    return trainable_bytes == 2 and not c.pure_bf16


def lora_params(c: "PlanConfig", targets: list[Target]) -> int:
    """LoRA adapter values: r x (in + out) per targeted module."""
    return sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets)


def trainable_values(c: "PlanConfig", m: ModelShape, targets: list[Target], b_w: int) -> tuple[int, int]:
    """(count, bytes each) of what the optimizer updates: scores (mask), adapters (lora) or weights (fft)."""
    if c.method == "mask":
        return sum(t.numel for t in targets), SCORE_BYTES[c.score_dtype]
    if c.method == "lora":
        return lora_params(c, targets), 4  # PEFT upcasts adapters to fp32
    return m.params, b_w


def layer_activation_bytes(c: "PlanConfig", m: ModelShape, batch: int, b_a: int) -> float:
    """One layer's stored activations (Korthikanti et al.): S x B x h x (34 [+ 5 x a x S / h, eager]) x b_a/2."""
    s = c.seq_len
    return s * batch * m.hidden * (34 + (5 * m.heads * s / m.hidden if c.attention == "eager" else 0)) * b_a / 2


def activation_terms(c: "PlanConfig", m: ModelShape, *, micro: int, b_a: int, first: int) -> list[Term]:
    """Activations kept for the backward of the layers from `first` on, with or without checkpointing."""
    s, h, a = c.seq_len, m.hidden, m.heads
    backward_layers = m.layers - first
    eager = c.attention == "eager"
    per_layer = layer_activation_bytes(c, m, micro, b_a)
    symbols, bracket = ("(34 + 5 x a x S / h)", f"(34 + 5 x {a} x {s} / {h})") if eager else ("34", "34")
    scale = "" if b_a == 2 else f" x {b_a}/2"
    per_formula = f"S x B x h x {symbols}{scale} = {s} x {micro} x {h} x {bracket}{scale}"
    span = f"layers {first}-{m.layers - 1}" if backward_layers else "no layer"
    terms = [Term("activations per layer", f"{per_formula} B ({c.attention})", per_layer, "B", counted=False)]
    if not c.gradient_checkpointing:
        terms.append(
            Term(
                "activations",
                f"{backward_layers} layers ({span}) x {fmt_bytes(per_layer)}",
                backward_layers * per_layer,
                "B",
            )
        )
    else:
        inputs = s * micro * h * b_a
        terms.append(
            Term(
                "checkpointed layer inputs",
                f"{backward_layers} layers ({span}) x S x B x h x b_a = {backward_layers} x {s} x {micro} x "
                f"{h} x {b_a} B",
                backward_layers * inputs,
                "B",
            )
        )
        terms.append(
            Term("recomputed layer", f"1 layer x {fmt_bytes(per_layer)}", per_layer if backward_layers else 0.0, "B")
        )
    return terms


def loss_chunks(m: ModelShape, rows: int, count: int = 2) -> float:
    """Bytes of the fp32 chunks the chunked loss holds at once (mftlab.training.chunked_nll): two in
    the forward (evaluation), up to four in the training backward."""
    return count * min(CHUNK_ELEMENTS, rows * m.vocab) * 4


def logits_term(c: "PlanConfig", m: ModelShape, micro: int, b_a: int) -> Term:
    """The logits and their gradient in the activation dtype; the fp32 loss is taken chunk by chunk."""
    return Term(
        "logits + grad",
        f"B x S x V x b_a x 2 + 4 fp32 loss chunks = {micro} x {c.seq_len} x {m.vocab} x {b_a} x 2 + "
        f"{fmt_bytes(loss_chunks(m, micro * c.seq_len, 4))}",
        micro * c.seq_len * m.vocab * b_a * 2 + loss_chunks(m, micro * c.seq_len, 4),
        "B",
    )


def eval_transient_terms(c: "PlanConfig", m: ModelShape, batch: int, b_a: int) -> list[Term]:
    """What one evaluation batch adds (no grad): one layer's activations, the logits, two fp32 chunks."""
    s = c.seq_len
    return [
        Term(
            "one layer's activations",
            f"S x B x h x 34 x b_a/2 = {s} x {batch} x {m.hidden} x 34 x {b_a}/2 B (no grad)",
            layer_activation_bytes(c, m, batch, b_a),
            "B",
        ),
        Term(
            "logits + fp32 loss chunks",
            f"B x S x V x b_a + 2 chunks = {batch} x {s} x {m.vocab} x {b_a} + {fmt_bytes(loss_chunks(m, batch * s))}",
            batch * s * m.vocab * b_a + loss_chunks(m, batch * s),
            "B",
        ),
    ]


def _weights_term(c: "PlanConfig", m: ModelShape, b_w: int) -> Term:
    return Term("weights", f"{fmt_count(m.params)} params x {b_w} B ({dtype_name(c, m)})", m.params * b_w, "B")


def eval_memory(c: "PlanConfig", m: ModelShape, b_w: int, b_a: int) -> list[Term]:
    """What `mftlab eval` holds per process: the model and one batch's forward (batch = --batch-size)."""
    return [_weights_term(c, m, b_w)] + eval_transient_terms(c, m, c.batch_size, b_a)


def _trainable_terms(what: str, n: int, b_t: int, c: "PlanConfig", fsdp: bool) -> list[Term]:
    """Trainable values (weights or scores), their grads and AdamW states, with the master-weights rule.

    DDP / one process, 16-bit: values and grads in 16 bit, fp32 master copy and master grads,
    AdamW states fp32. FSDP2: trainable values are cast to fp32 before sharding (16-bit, not
    pure), so the sharded values, grads (reduce dtype fp32) and states are fp32, over the GPUs.
    """
    g = c.gpus
    master = master_weights(c, b_t)
    states = "fp32, of the master" if master else "param dtype"
    if fsdp:
        b = 4 if master else b_t
        why = " (cast to fp32 before sharding)" if master else ""
        return [
            Term(what, f"{fmt_count(n)} x {b} B{why} / {g} GPUs", n * b / g, "B"),
            Term(
                f"{'score ' if what == 'scores' else ''}grads",
                f"{fmt_count(n)} x {b} B (sharded) / {g} GPUs",
                n * b / g,
                "B",
            ),
            Term("AdamW states", f"2 x {fmt_count(n)} x {b} B ({states}) / {g} GPUs", 2 * n * b / g, "B"),
        ]
    grads = "score grads" if what == "scores" else "grads"
    terms = [Term(grads, f"{fmt_count(n)} x {b_t} B", n * b_t, "B")]
    if master:
        terms += [
            Term("fp32 master copy", f"{fmt_count(n)} x 4 B", n * 4, "B"),
            Term("fp32 master grads", f"{fmt_count(n)} x 4 B", n * 4, "B"),
        ]
    b_state = 4 if master else b_t
    terms.append(Term("AdamW states", f"2 x {fmt_count(n)} x {b_state} B ({states})", 2 * n * b_state, "B"))
    return terms


def _fft_terms(c: "PlanConfig", m: ModelShape, b_w: int, fsdp: bool) -> list[Term]:
    """Full fine-tuning: the weights are the trainable values (FSDP2 holds only their fp32 shards)."""
    if fsdp:
        return _trainable_terms("weights", m.params, b_w, c, fsdp=True)
    return [_weights_term(c, m, b_w)] + _trainable_terms("weights", m.params, b_w, c, fsdp=False)


def _frozen_weights_term(c: "PlanConfig", m: ModelShape, b_w: int, fsdp: bool) -> Term:
    over, shard = (f" / {c.gpus} GPUs", c.gpus) if fsdp else ("", 1)
    formula = f"{fmt_count(m.params)} params x {b_w} B ({dtype_name(c, m)}){over}"
    return Term("weights (frozen)", formula, m.params * b_w / shard, "B")


def _mask_terms(c: "PlanConfig", targets: list[Target], b_w: int, fsdp: bool) -> list[Term]:
    """MFT: scores (FSDP2 counts them with their shards), grads, states, the keep masks and the STE."""
    T = sum(t.numel for t in targets)
    b_s = SCORE_BYTES[c.score_dtype]
    terms = [] if fsdp else [Term("scores", f"{fmt_count(T)} targeted x {b_s} B ({c.score_dtype})", T * b_s, "B")]
    terms += _trainable_terms("scores", T, b_s, c, fsdp)
    terms.append(Term("keep-mask buffer", f"{fmt_count(T)} x 1 B (bool, replicated)", T, "B"))
    terms.append(Term("packed masks for flip counts", f"step 0 + last log: 2 x {fmt_count(T)} x 1/8 B", T / 4, "B"))
    largest = max(t.numel for t in targets)
    terms.append(
        Term(
            "STE backward transient",
            f"largest target {fmt_count(largest)} x ({b_w} + 12) B",
            largest * (b_w + 12),
            "B",
        )
    )
    return terms


def _lora_terms(c: "PlanConfig", targets: list[Target]) -> list[Term]:
    A = lora_params(c, targets)
    return [
        Term("LoRA adapters", f"r x (in + out) summed = {fmt_count(A)} x 4 B (fp32)", A * 4, "B"),
        Term("adapter grads", f"{fmt_count(A)} x 4 B", A * 4, "B"),
        Term("AdamW states", f"2 x {fmt_count(A)} x 4 B", 2 * A * 4, "B"),
    ]


def _fsdp_mask_transients(c: "PlanConfig", m: ModelShape, targets: list[Target], b_w: int) -> list[Term]:
    """Gathered layers and the exact sharded selection of MFT under FSDP2."""
    g = c.gpus
    unit = max(m.layer_params) if m.layer_params else 0
    T = sum(t.numel for t in targets)
    # As the trainer shards: fp32 scores get no mixed-precision policy, so a gathered layer holds its
    # weights in b_w and its scores in fp32; bf16 scores (policy param_dtype bf16) gather in 2 B.
    per_layer: dict[int, int] = {}
    for t in targets:
        per_layer[t.layer] = per_layer.get(t.layer, 0) + t.numel
    s_unit = max(per_layer.values(), default=0)
    b_g = SCORE_BYTES[c.score_dtype]
    return [
        Term(
            "gathered layers (fsdp)",
            f"2 layers (the one in backward + the next, prefetched) x "
            f"({fmt_count(unit)} weights x {b_w} B + "
            f"{fmt_count(s_unit)} scores x {b_g} B)",
            2 * (unit * b_w + s_unit * b_g),
            "B",
        ),
        # The exact sharded selection's transients: int32 keys of the local scores,
        # the new keep masks beside the old ones, the packed all_gather buffer.
        Term(
            "sharded selection transient (fsdp)",
            f"{fmt_count(T)} x (4 B / {g} + 1 B + 1/8 B)",
            T * (4 / g + 1 + 1 / 8),
            "B",
        ),
    ]


def _fsdp_host_ram_terms(m: ModelShape, b_w: int) -> list[Term]:
    """Not per-GPU memory: rank 0 alone reads the checkpoint into host RAM; the others build the
    model on the meta device and receive their shards by broadcast, one tensor at a time."""
    largest = m.vocab * m.hidden  # the embedding (or head): the largest tensor broadcast
    return [
        Term(
            "host RAM at load, rank 0 (fsdp)",
            f"{fmt_count(m.params)} params x {b_w} B, the whole checkpoint (host RAM; not in the total)",
            m.params * b_w,
            "B",
            counted=False,
        ),
        Term(
            "host RAM at load, ranks > 0 (fsdp)",
            f"largest tensor in flight {fmt_count(largest)} x {b_w} B (their shards are counted above)",
            largest * b_w,
            "B",
            counted=False,
        ),
    ]


def _fsdp_terms(c: "PlanConfig", m: ModelShape, targets: list[Target], b_w: int) -> list[Term]:
    """FSDP2's unsharded compute copies (two decoder layers and the root unit) and the host RAM at load."""
    unit = max(m.layer_params) if m.layer_params else 0
    root = m.params - sum(m.layer_params)
    if c.method == "mask":
        terms = _fsdp_mask_transients(c, m, targets, b_w)
    else:
        terms = [
            Term(
                "gathered layers (fsdp)",
                f"2 layers (the one in backward + the next, prefetched) x {fmt_count(unit)} params x {b_w} B",
                2 * unit * b_w,
                "B",
            )
        ]
    terms.append(
        Term(
            "gathered root unit (fsdp)",
            f"embeddings, final norm, head: {fmt_count(root)} x {b_w} B "
            "(gathered for the forward, again for the whole backward)",
            root * b_w,
            "B",
        )
    )
    return terms + _fsdp_host_ram_terms(m, b_w)


def train_memory(
    c: "PlanConfig", m: ModelShape, targets: list[Target], *, b_w: int, b_a: int, first: int
) -> list[Term]:
    """What `mftlab train` holds per process; activations are kept for the layers from `first` on."""
    g = c.gpus
    micro = c.batch_size // (c.gpus * c.grad_accum)
    fsdp = c.sharding == "fsdp"
    terms = [
        Term(
            "micro-batch per GPU",
            f"batch / (GPUs x grad_accum) = {c.batch_size} / ({g} x {c.grad_accum})",
            micro,
            "examples",
            counted=False,
        )
    ]
    if c.method == "fft":
        terms += _fft_terms(c, m, b_w, fsdp)
    else:
        terms.append(_frozen_weights_term(c, m, b_w, fsdp))
        terms += _mask_terms(c, targets, b_w, fsdp) if c.method == "mask" else _lora_terms(c, targets)
    if g > 1 and not fsdp:
        trainable, b_t = trainable_values(c, m, targets, b_w)
        terms.append(Term("DDP gradient buckets", f"{fmt_count(trainable)} x {b_t} B", trainable * b_t, "B"))
    if fsdp:
        terms += _fsdp_terms(c, m, targets, b_w)
    terms += activation_terms(c, m, micro=micro, b_a=b_a, first=first)
    terms.append(logits_term(c, m, micro, b_a))
    if c.eval_batch_size:
        terms += _eval_during_training(c, m, b_a, terms)
    return terms


def _eval_during_training(c: "PlanConfig", m: ModelShape, b_a: int, terms: list[Term]) -> list[Term]:
    """Evaluation runs between optimizer steps, with the gradients freed: it raises the peak only when
    its batch's logits and activations exceed the training step's gradients and activations."""
    step_transients = sum(
        t.value
        for t in terms
        if t.counted and t.unit == "B" and ("grads" in t.name or t.name.startswith(("activations", "logits")))
    )
    step_transients += sum(
        t.value for t in terms if t.counted and t.name in ("checkpointed layer inputs", "recomputed layer")
    )
    evaluation = sum(t.value for t in eval_transient_terms(c, m, c.eval_batch_size, b_a))
    return [
        Term(
            "evaluation pass (between steps)",
            f"batch {c.eval_batch_size}: one layer's activations + logits + 2 fp32 chunks ({fmt_bytes(evaluation)}) "
            f"beyond the step's grads, activations and logits ({fmt_bytes(step_transients)})",
            max(0.0, evaluation - step_transients),
            "B",
        )
    ]


def _plane_terms(c: "PlanConfig", m: ModelShape, b_w: int, perturbed: int, largest: int) -> list[Term]:
    """What a landscape plane keeps beside the live model: theta0 and directions, or the other models."""
    dt = dtype_name(c, m)
    if c.plane != "random":
        copies = 3 if c.plane == "models" else 2
        what = "A (pristine), B, C" if c.plane == "models" else "A (pristine), B"
        return [
            Term(
                f"{c.plane} plane: {what}",
                f"{copies} x {fmt_count(m.params)} x {b_w} B ({dt}; every parameter assumed to differ)",
                copies * m.params * b_w,
                "B",
            )
        ]
    dims = 1 if parse_grid(c.grid)[1] == 1 else 2
    theta0 = Term("pristine theta0", f"{fmt_count(perturbed)} perturbed x {b_w} B ({dt}, exact)", perturbed * b_w, "B")
    if perturbed <= AUTO_CACHE_LIMIT:
        directions = Term(
            "directions (cached)",
            f"{dims} x {fmt_count(perturbed)} x 4 B (fp32; cached up to {fmt_count(AUTO_CACHE_LIMIT)} perturbed)",
            dims * perturbed * 4,
            "B",
        )
    else:
        directions = Term(
            "directions (regenerated)",
            f"{dims} x largest tensor {fmt_count(largest)} x 4 B (fp32)",
            dims * largest * 4,
            "B",
        )
    return [theta0, directions]


def landscape_memory(c: "PlanConfig", m: ModelShape, *, b_w: int, b_a: int, perturbed: int, largest: int) -> list[Term]:
    """What `mftlab landscape` holds per process: the live model, the plane, one chunk, one forward."""
    chunk = min(CHUNK.get(c.gpu, GPU_CHUNK), max(largest, 1))
    return (
        [_weights_term(c, m, b_w)]
        + _plane_terms(c, m, b_w, perturbed, largest)
        + [Term("fp32 chunk of a point", f"{fmt_count(chunk)} x 4 B", chunk * 4, "B")]
        + eval_transient_terms(c, m, c.batch_size, b_a)
    )


def overhead_terms(c: "PlanConfig", terms: list[Term]) -> list[Term]:
    subtotal = sum(t.value for t in terms if t.counted and t.unit == "B")
    context = 0 if c.gpu == "cpu" else c.context_gib * GIB
    return [
        Term(
            "overhead",
            f"{c.overhead:.0%} x {fmt_bytes(subtotal)} (allocator, fragmentation)",
            c.overhead * subtotal,
            "B",
        ),
        Term("CUDA context", f"{c.context_gib} GiB" if c.gpu != "cpu" else "none (CPU)", context, "B"),
    ]

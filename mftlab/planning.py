"""Memory and time estimates for `mftlab train` and `mftlab landscape`, from a model's config alone.

Pure arithmetic: a `PlanConfig` and a `ModelShape` (counted on the meta device, see
`mftlab.model_shapes`) in, a `Plan` out, whose every `Term` carries its formula with the numbers
filled in. Symbols: N parameters, T targeted weights, b_w / b_s / b_a bytes per weight / score /
activation, B micro-batch per GPU, S sequence length, h hidden size, a heads, V vocabulary,
L layers, g GPUs. GiB = 2^30 bytes.

Memory per GPU, mask training (`--method mask`):
  frozen weights N*b_w; scores T*b_s; score grads T*b_s; AdamW exp_avg + exp_avg_sq 2*T*b_s
  (torch keeps the states in the parameter's dtype); the keep-mask buffer T*1 byte; the STE's
  backward transient for the largest targeted weight (W⊙keep in b_w plus fp32 dL/dW, W and
  product: +12 B each); activations; logits B*S*V*4 (fp32 loss) x2 for their gradient.
Activations (Korthikanti et al. 2022, "Reducing activation recomputation"): S*B*h*(34 + 5*a*S/h)
  bytes per layer in 16-bit without recomputation (scaled by b_a/2 in fp32); with SDPA / flash
  attention the 5*a*S/h term (the S x S scores) is not stored. With activation checkpointing:
  the layer inputs S*B*h*b_a per layer plus one layer's activations during its recomputation.
  Only layers from the first targeted layer on store activations (nothing before it needs a
  backward pass), which is what makes local MFT on deep layers cheap. For Llama the formula
  counts dropout masks that do not exist but not SwiGLU's third projection, and frozen linears
  that need no weight gradient save no inputs; on tiny-llama (CPU, fp32, SDPA) it is within
  0.85-1.05x of the bytes autograd actually saves (tests/test_planning.py).
Full fine-tuning (`fft`): weights + grads + AdamW 2 states, all in the parameter dtype: mftlab's
  trainer runs torch AdamW on the loaded weights under accelerate's autocast, with no fp32 master
  copy (load with --dtype float32 to get fp32 weights and states: 16 B per parameter).
LoRA (`lora`): frozen weights, adapters r*(in+out) per targeted module in fp32 (PEFT upcasts
  adapters), their grads and 2 AdamW states; activations as for masks.
Sharding (through accelerate): zero2 divides grads and optimizer states by g; zero3 and fsdp
  also divide the parameters, and hold one gathered layer plus one prefetched (2 layers x b_w).
  Without sharding and with g > 1, DDP keeps gradient buckets: one more copy of the grads.
  The keep-mask buffer is never sharded. A stated overhead is added: 10% of the sum plus 0.5 GiB
  of CUDA context.
Time: FLOPs per token: forward 2*N_mm (N_mm = weights of every matmul, output head included)
  + attention 4*L*S*h; backward: fft 2 x forward; mask 2*N_mm (input grads) and 8*S*h of
  attention for the layers from the first targeted layer on (plus the head) + 2*T (score grads);
  checkpointing recomputes the forward of those layers. time = FLOPs / (g * peak * MFU), default
  MFU 0.4; per optimizer step add the memory-bound mask selection (kthvalue over T scores,
  ~3*T*b_s bytes) and AdamW update (~7 reads/writes of the trainable values) over bandwidth.
  Landscape: points x tokens per point (train + test subsets) x forward FLOPs + per point the
  weight update, ~3 fp32 passes over the perturbed weights, over bandwidth; points split over g.

These are estimates. They must be checked against measurements from bench/gpu_check.sh
(pending: no GPU was available when this module was written).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.model_shapes import ModelShape
from mftlab.targeting import Target, TargetSpec

GIB = 2**30
TASKS = ("train", "landscape")
METHODS = ("mask", "fft", "lora")
SHARDINGS = ("none", "zero2", "zero3", "fsdp")
PRECISIONS = ("auto", "bf16", "fp32")
ATTENTIONS = ("sdpa", "eager")
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
SCORE_BYTES = {"fp32": 4, "bf16": 2}


@dataclass(frozen=True)
class GPU:
    """Dense peak throughput (FLOP/s), memory bandwidth (B/s) and memory (bytes) of one card."""

    name: str
    peak_bf16: float
    peak_fp32: float  # plain fp32 matmuls (torch leaves TF32 off for matmuls by default)
    bandwidth: float
    memory: int


GPUS = {
    "h100": GPU("H100 SXM 80GB", 989e12, 67e12, 3.35e12, 81559 * 2**20),
    "h200": GPU("H200 SXM 141GB", 989e12, 67e12, 4.8e12, 143771 * 2**20),
    "a100": GPU("A100 SXM 80GB", 312e12, 19.5e12, 2.0e12, 81920 * 2**20),
}


def parse_grid(text: str) -> tuple[int, int]:
    """'21x21' -> (21, 21); '41' -> (41, 1), a line."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+))?\s*", str(text))
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise ConfigError(f"--grid '{text}' is not NXxNY with positive numbers; write e.g. 21x21, or 41 for a line")
    return int(m.group(1)), int(m.group(2) or 1)


@dataclass(frozen=True)
class PlanConfig:
    """What to plan; the options mirror `mftlab train` and `mftlab landscape`."""

    model: str
    task: str = "train"
    method: str = "mask"
    targets: str = "all-linear"
    layers: str | None = None
    exclude: str | None = None
    score_dtype: str = "fp32"
    dtype: str = "auto"  # auto = the config's dtype (float32 when it names none), as `--dtype auto` loads
    precision: str = "auto"  # auto = bf16 autocast, as the trainer picks on every GPU in the table
    batch_size: int = 8  # train: examples per optimizer step over all GPUs (as `mftlab train`); landscape: per process
    grad_accum: int = 1
    seq_len: int = 512
    gpus: int = 1
    sharding: str = "none"
    checkpointing: bool = False
    attention: str = "sdpa"
    gpu: str = "h100"
    mfu: float = 0.4
    tokens: int | None = None  # training tokens per epoch
    examples: int | None = None  # or examples per epoch, each counted as seq_len tokens
    epochs: float = 2.0
    lora_r: int = 16
    grid: str = "21x21"
    landscape_tokens: int = 4096  # label tokens per subset (train and test), as `mftlab landscape --max-tokens`
    overhead: float = 0.10
    context_gib: float = 0.5
    mftlab_version: str = field(default=__version__)

    def __post_init__(self):
        choices = {"task": TASKS, "method": METHODS, "sharding": SHARDINGS, "precision": PRECISIONS,
                   "attention": ATTENTIONS, "gpu": tuple(GPUS), "score_dtype": tuple(SCORE_BYTES),
                   "dtype": ("auto",) + tuple(DTYPE_BYTES)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"--{name.replace('_', '-')} '{getattr(self, name)}' is unknown; "
                                  f"choose one of {', '.join(allowed)}")
        for name in ("batch_size", "grad_accum", "seq_len", "gpus", "lora_r", "landscape_tokens"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
                raise ConfigError(f"--{name.replace('_', '-')} {value} must be a whole number of at least 1")
        for name in ("tokens", "examples"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"--{name} {value} must be a whole number of at least 1")
        if self.tokens is not None and self.examples is not None:
            raise ConfigError(f"--tokens {self.tokens} and --examples {self.examples} both given; give one of them")
        if not 0.0 < self.mfu <= 1.0:
            raise ConfigError(f"--mfu {self.mfu} is outside (0, 1]; typical values are 0.3-0.5 (default 0.4)")
        if not self.epochs > 0:
            raise ConfigError(f"--epochs {self.epochs} must be positive (the paper trains 2 epochs)")
        if self.overhead < 0 or self.context_gib < 0:
            raise ConfigError(f"overhead {self.overhead} and context {self.context_gib} GiB must be >= 0")
        parse_grid(self.grid)
        if self.task == "train" and self.batch_size % (self.gpus * self.grad_accum):
            raise ConfigError(f"--batch-size {self.batch_size} is not a multiple of --gpus ({self.gpus}) x "
                              f"--grad-accum ({self.grad_accum}); choose sizes that divide evenly")
        self.target_spec()

    def target_spec(self) -> TargetSpec:
        return TargetSpec.parse(self.targets, self.layers, self.exclude)

    def default_targets(self) -> bool:
        return self.targets == "all-linear" and not self.layers and not self.exclude

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Term:
    """One line of the arithmetic: `value` (in `unit`) = `formula` with its numbers filled in."""

    name: str
    formula: str
    value: float
    unit: str  # "B", "FLOP", "s", "tokens", "steps"
    counted: bool = True  # part of its section's total (False for intermediate quantities)


@dataclass(frozen=True)
class Plan:
    """The estimate: memory terms (per GPU) and their total, time terms and the totals."""

    config: dict
    model: dict
    targeted_weights: int
    first_layer: int | None  # first layer whose activations are kept for backward
    memory: list[Term]
    memory_per_gpu: float  # bytes
    gpu_memory: float  # bytes of one card of config.gpu
    fits: bool
    time: list[Term]
    step_seconds: float | None  # train: one optimizer step
    total_seconds: float | None  # train: whole run (when --tokens / --examples given); landscape: all points
    notes: list[str]

    def to_dict(self) -> dict:
        return asdict(self)


def fmt_count(n: float) -> str:
    """6738415616 -> '6.74e9'; small numbers stay plain."""
    if abs(n) < 1e5:
        return f"{n:,.0f}" if float(n).is_integer() else f"{n:.3g}"
    mantissa, exponent = f"{n:.3g}".split("e")  # .3g always uses an exponent from 1e5 on
    return f"{mantissa}e{int(exponent)}"


def fmt_bytes(b: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= 0.1 * size:
            return f"{b / size:.3g} {unit}"
    return f"{b:.0f} B"


def fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.3g} h"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def _dtype(c: PlanConfig, m: ModelShape) -> str:
    return m.dtype if c.dtype == "auto" else c.dtype


def _largest_matrix(m: ModelShape) -> int:
    # Without a target list the biggest 2-D parameter is the embedding (or the untied head).
    return m.vocab * m.hidden


# -- memory ------------------------------------------------------------------------------
def _activation_terms(c: PlanConfig, m: ModelShape, micro: int, b_a: int, backward_layers: int,
                      first: int) -> list[Term]:
    s, h, a = c.seq_len, m.hidden, m.heads
    eager = c.attention == "eager"
    per_layer = s * micro * h * (34 + (5 * a * s / h if eager else 0)) * b_a / 2
    symbols, bracket = ("(34 + 5 x a x S / h)", f"(34 + 5 x {a} x {s} / {h})") if eager else ("34", "34")
    scale = "" if b_a == 2 else f" x {b_a}/2"
    per_formula = f"S x B x h x {symbols}{scale} = {s} x {micro} x {h} x {bracket}{scale}"
    span = f"layers {first}-{m.layers - 1}" if backward_layers else "no layer"
    terms = [Term("activations per layer", f"{per_formula} B ({c.attention})", per_layer, "B", counted=False)]
    if not c.checkpointing:
        terms.append(Term("activations", f"{backward_layers} layers ({span}) x {fmt_bytes(per_layer)}",
                          backward_layers * per_layer, "B"))
    else:
        inputs = s * micro * h * b_a
        terms.append(Term("checkpointed layer inputs",
                          f"{backward_layers} layers ({span}) x S x B x h x b_a = {backward_layers} x {s} x {micro} x "
                          f"{h} x {b_a} B", backward_layers * inputs, "B"))
        terms.append(Term("recomputed layer", f"1 layer x {fmt_bytes(per_layer)}",
                          per_layer if backward_layers else 0.0, "B"))
    return terms


def _logits(c: PlanConfig, m: ModelShape, micro: int) -> Term:
    return Term("logits + grad", f"B x S x V x 4 B (fp32 loss) x 2 = {micro} x {c.seq_len} x {m.vocab} x 4 x 2",
                micro * c.seq_len * m.vocab * 8, "B")


def _train_memory(c: PlanConfig, m: ModelShape, targets: list[Target], b_w: int, b_a: int,
                  first: int) -> list[Term]:
    g = c.gpus
    micro = c.batch_size // (c.gpus * c.grad_accum)
    shard_params = g if c.sharding in ("zero3", "fsdp") else 1
    shard_states = g if c.sharding != "none" else 1

    def sharded(n: int) -> str:
        return f" / {n} GPUs" if n > 1 else ""

    terms = [Term("micro-batch per GPU", f"batch / (GPUs x grad_accum) = {c.batch_size} / ({g} x {c.grad_accum})",
                  micro, "examples", counted=False)]
    N = m.params
    terms.append(Term("weights" + (" (frozen)" if c.method != "fft" else ""),
                      f"{fmt_count(N)} params x {b_w} B ({_dtype(c, m)}){sharded(shard_params)}",
                      N * b_w / shard_params, "B"))
    T = sum(t.numel for t in targets)
    if c.method == "mask":
        b_s = SCORE_BYTES[c.score_dtype]
        trainable, b_t = T, b_s
        terms.append(Term("scores", f"{fmt_count(T)} targeted x {b_s} B ({c.score_dtype}){sharded(shard_params)}",
                          T * b_s / shard_params, "B"))
        terms.append(Term("score grads", f"{fmt_count(T)} x {b_s} B{sharded(shard_states)}",
                          T * b_s / shard_states, "B"))
        terms.append(Term("AdamW states", f"2 x {fmt_count(T)} x {b_s} B (param dtype){sharded(shard_states)}",
                          2 * T * b_s / shard_states, "B"))
        terms.append(Term("keep-mask buffer", f"{fmt_count(T)} x 1 B (bool)", T, "B"))
        largest = max(t.numel for t in targets)
        terms.append(Term("STE backward transient", f"largest target {fmt_count(largest)} x ({b_w} + 12) B",
                          largest * (b_w + 12), "B"))
    elif c.method == "lora":
        A = sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets)
        trainable, b_t = A, 4
        terms.append(Term("LoRA adapters", f"r x (in + out) summed = {fmt_count(A)} x 4 B (fp32){sharded(shard_params)}",
                          A * 4 / shard_params, "B"))
        terms.append(Term("adapter grads", f"{fmt_count(A)} x 4 B{sharded(shard_states)}", A * 4 / shard_states, "B"))
        terms.append(Term("AdamW states", f"2 x {fmt_count(A)} x 4 B{sharded(shard_states)}",
                          2 * A * 4 / shard_states, "B"))
    else:
        trainable, b_t = N, b_w
        terms.append(Term("grads", f"{fmt_count(N)} x {b_w} B{sharded(shard_states)}", N * b_w / shard_states, "B"))
        terms.append(Term("AdamW states", f"2 x {fmt_count(N)} x {b_w} B (param dtype, no fp32 master){sharded(shard_states)}",
                          2 * N * b_w / shard_states, "B"))
    if g > 1 and c.sharding == "none":
        terms.append(Term("DDP gradient buckets", f"{fmt_count(trainable)} x {b_t} B", trainable * b_t, "B"))
    if shard_params > 1:
        unit = max(m.layer_params) if m.layer_params else 0
        terms.append(Term("gathered layers (zero3/fsdp)", f"2 layers x {fmt_count(unit)} params x {b_w} B",
                          2 * unit * b_w, "B"))
    backward_layers = m.layers - first
    terms += _activation_terms(c, m, micro, b_a, backward_layers, first)
    terms.append(_logits(c, m, micro))
    return terms


def _landscape_memory(c: PlanConfig, m: ModelShape, b_w: int, b_a: int, perturbed: int, largest: int) -> list[Term]:
    s, b = c.seq_len, c.batch_size
    per_layer = s * b * m.hidden * (34 + (5 * m.heads * s / m.hidden if c.attention == "eager" else 0)) * b_a / 2
    return [
        Term("weights", f"{fmt_count(m.params)} params x {b_w} B ({_dtype(c, m)})", m.params * b_w, "B"),
        Term("pristine copy theta0", f"{fmt_count(perturbed)} perturbed x 4 B (fp32)", perturbed * 4, "B"),
        Term("directions (per tensor)", f"2 x largest {fmt_count(largest)} x 4 B (fp32, regenerated)",
             2 * largest * 4, "B"),
        Term("one layer's activations", f"S x B x h x 34 x b_a/2 = {s} x {b} x {m.hidden} x 34 x {b_a}/2 B (no grad)",
             per_layer, "B"),
        Term("logits", f"B x S x V x ({b_a} + 4) B = {b} x {s} x {m.vocab} x {b_a + 4}", b * s * m.vocab * (b_a + 4), "B"),
    ]


def _overhead(c: PlanConfig, terms: list[Term]) -> list[Term]:
    subtotal = sum(t.value for t in terms if t.counted and t.unit == "B")
    return [Term("overhead", f"{c.overhead:.0%} x {fmt_bytes(subtotal)} (allocator, fragmentation)",
                 c.overhead * subtotal, "B"),
            Term("CUDA context", f"{c.context_gib} GiB", c.context_gib * GIB, "B")]


# -- time --------------------------------------------------------------------------------
def _train_time(c: PlanConfig, m: ModelShape, targets: list[Target], gpu: GPU, peak: float, b_w: int,
                first: int) -> list[Term]:
    s, h, L, g = c.seq_len, m.hidden, m.layers, c.gpus
    N_mm = m.matmul_params
    head_mm = N_mm - sum(m.layer_matmul_params)
    N_bwd = sum(m.layer_matmul_params[first:]) + head_mm
    L_bwd = L - first
    T = sum(t.numel for t in targets)
    fwd = 2 * N_mm + 4 * L * s * h
    terms = [Term("forward", f"2 x N_mm + 4 x L x S x h = 2 x {fmt_count(N_mm)} + 4 x {L} x {s} x {h}", fwd,
                  "FLOP/token")]
    if c.method == "fft":
        terms.append(Term("backward", f"2 x forward = 2 x {fmt_count(fwd)}", 2 * fwd, "FLOP/token"))
    else:
        terms.append(Term("backward (input grads)",
                          f"2 x N_mm(layers {first}+ and head) + 8 x {L_bwd} x S x h = 2 x {fmt_count(N_bwd)} + "
                          f"8 x {L_bwd} x {s} x {h}", 2 * N_bwd + 8 * L_bwd * s * h, "FLOP/token"))
        if c.method == "mask":
            terms.append(Term("backward (score grads)", f"2 x T = 2 x {fmt_count(T)}", 2 * T, "FLOP/token"))
        else:
            A = sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets)
            terms.append(Term("LoRA adapters (fwd + bwd)", f"6 x {fmt_count(A)}", 6 * A, "FLOP/token"))
    if c.checkpointing:
        rec = 2 * sum(m.layer_matmul_params[first:]) + 4 * L_bwd * s * h
        terms.append(Term("recompute (checkpointing)", f"2 x N_mm(layers {first}+) + 4 x {L_bwd} x S x h = 2 x "
                          f"{fmt_count(sum(m.layer_matmul_params[first:]))} + 4 x {L_bwd} x {s} x {h}", rec, "FLOP/token"))
    per_token = sum(t.value for t in terms)
    terms.append(Term("total per token", " + ".join(fmt_count(t.value) for t in terms), per_token, "FLOP/token",
                      counted=False))
    tokens_step = c.batch_size * s
    compute = tokens_step * per_token / (g * peak * c.mfu)
    terms.append(Term("tokens per step", f"batch x S = {c.batch_size} x {s}", tokens_step, "tokens", counted=False))
    terms.append(Term("compute per step", f"{tokens_step} x {fmt_count(per_token)} / ({g} x {peak / 1e12:g}e12 x "
                      f"{c.mfu})", compute, "s"))
    if c.method == "mask":
        b_s = SCORE_BYTES[c.score_dtype]
        terms.append(Term("mask selection per step", f"3 x T x b_s / BW = 3 x {fmt_count(T)} x {b_s} / "
                          f"{gpu.bandwidth / 1e12:g}e12", 3 * T * b_s / gpu.bandwidth, "s"))
        trainable, b_t = T, SCORE_BYTES[c.score_dtype]
    elif c.method == "lora":
        trainable, b_t = sum(c.lora_r * (t.shape[0] + t.shape[1]) for t in targets), 4
    else:
        trainable, b_t = m.params, b_w
    local = trainable / (g if c.sharding != "none" else 1)
    terms.append(Term("AdamW update per step", f"7 x {fmt_count(local)} x {b_t} B / {gpu.bandwidth / 1e12:g}e12",
                      7 * local * b_t / gpu.bandwidth, "s"))
    return terms


def _landscape_time(c: PlanConfig, m: ModelShape, gpu: GPU, peak: float, perturbed: int) -> list[Term]:
    nx, ny = parse_grid(c.grid)
    points = nx * ny
    s, L, h = c.seq_len, m.layers, m.hidden
    fwd = 2 * m.matmul_params + 4 * L * s * h
    tokens = 2 * c.landscape_tokens
    eval_s = tokens * fwd / (peak * c.mfu)
    update_s = 3 * perturbed * 4 / gpu.bandwidth
    return [
        Term("grid points", f"{nx} x {ny}", points, "points", counted=False),
        Term("forward", f"2 x N_mm + 4 x L x S x h = 2 x {fmt_count(m.matmul_params)} + 4 x {L} x {s} x {h}", fwd,
             "FLOP/token", counted=False),
        Term("evaluation per point", f"2 subsets x {c.landscape_tokens} tokens x {fmt_count(fwd)} / "
             f"({peak / 1e12:g}e12 x {c.mfu})", eval_s, "s"),
        Term("weight update per point", f"3 x {fmt_count(perturbed)} x 4 B / {gpu.bandwidth / 1e12:g}e12",
             update_s, "s"),
    ]


# -- the plan ----------------------------------------------------------------------------
def plan(c: PlanConfig, m: ModelShape, targets: list[Target]) -> Plan:
    """The estimate for config `c` on model shape `m` with these targeted weights.

    `targets` are the weights masked (mask), adapted (lora) or perturbed (landscape; empty =
    every weight matrix); fft ignores them.
    """
    gpu = GPUS[c.gpu]
    b_w = DTYPE_BYTES[_dtype(c, m)]
    bf16 = c.precision in ("auto", "bf16")
    b_a = 2 if bf16 else b_w
    peak = gpu.peak_bf16 if (bf16 or b_w == 2) else gpu.peak_fp32
    notes = []
    if m.max_positions and c.seq_len > m.max_positions:
        notes.append(f"--seq-len {c.seq_len} exceeds the model's {m.max_positions} positions")
    if c.task == "train" and c.method != "fft" and not targets:
        raise ConfigError(f"--method {c.method} needs targeted weights; check --targets/--layers")
    layers_of = [t.layer for t in targets if t.layer is not None and t.layer < m.layers]
    first = 0 if c.method == "fft" else (min(layers_of) if layers_of else m.layers)
    targeted = sum(t.numel for t in targets)
    if c.task == "train":
        if c.method == "fft" and not c.default_targets():
            notes.append("--method fft trains every weight; --targets/--layers/--exclude are ignored")
        memory = _train_memory(c, m, targets if c.method != "fft" else [], b_w, b_a, first)
        time = _train_time(c, m, targets, gpu, peak, b_w, first)
        step = sum(t.value for t in time if t.unit == "s" and t.counted)
        total = None
        if c.tokens is not None or c.examples is not None:
            per_epoch = c.tokens if c.tokens is not None else c.examples * c.seq_len
            how = f"{c.tokens} tokens" if c.tokens is not None else f"{c.examples} examples x {c.seq_len}"
            all_tokens = c.epochs * per_epoch
            steps = math.ceil(all_tokens / (c.batch_size * c.seq_len))
            time.append(Term("optimizer steps", f"ceil({c.epochs:g} epochs x {how} / ({c.batch_size} x {c.seq_len}))",
                             steps, "steps", counted=False))
            total = steps * step
            time.append(Term("total", f"{steps} steps x {fmt_seconds(step)}", total, "s", counted=False))
        else:
            notes.append("give --tokens or --examples for the run's total time")
    else:
        perturbed = targeted if targets else m.matrix_params
        largest = max((t.numel for t in targets), default=0) or _largest_matrix(m)
        memory = _landscape_memory(c, m, b_w, b_a, perturbed, largest)
        time = _landscape_time(c, m, gpu, peak, perturbed)
        step = None
        points = parse_grid(c.grid)[0] * parse_grid(c.grid)[1]
        per_point = sum(t.value for t in time if t.unit == "s")
        total = points * per_point / c.gpus
        time.append(Term("total", f"{points} points x {fmt_seconds(per_point)} / {c.gpus} GPUs", total, "s",
                         counted=False))
        notes.append("tokens per point count label tokens; prompt tokens add forward work on top")
    memory += _overhead(c, memory)
    per_gpu = sum(t.value for t in memory if t.counted and t.unit == "B")
    notes.append("estimates; check them against bench/gpu_check.sh measurements (pending)")
    model = {"name": m.name, "model_type": m.model_type, "params": m.params, "layers": m.layers,
             "hidden": m.hidden, "heads": m.heads, "vocab": m.vocab, "dtype": _dtype(c, m)}
    return Plan(c.to_dict(), model, targeted, first if c.task == "train" else None, memory, per_gpu,
                gpu.memory, per_gpu <= gpu.memory, time, step, total, notes)


def make_plan(config: PlanConfig) -> Plan:
    """Plan `config.model` from its config alone (meta device, no weights)."""
    from mftlab.model_shapes import model_shape

    needs_targets = (config.task == "train" and config.method != "fft") or (
        config.task == "landscape" and not config.default_targets())
    shape, targets = model_shape(config.model, config.target_spec() if needs_targets else None)
    return plan(config, shape, targets)

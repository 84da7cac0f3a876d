"""Memory and time estimates for `mftlab train` and `mftlab landscape`, from a model's config alone.

Pure arithmetic: a `PlanConfig` and a `ModelShape` (counted on the meta device, see
`mftlab.models.shapes`) in, a `Plan` out, whose every `Term` carries its formula with the numbers
filled in. Symbols: N parameters, T targeted weights, b_w / b_s / b_a bytes per weight / score /
activation, B micro-batch per GPU, S sequence length, h hidden size, a heads, V vocabulary,
L layers, g GPUs (processes). GiB = 2^30 bytes. Terms: `planning_memory`, `planning_time`.

Memory per process, mask training (`--method mask`):
  frozen weights N*b_w; scores T*b_s and their grads T*b_s; AdamW exp_avg + exp_avg_sq in the
  scores' dtype for fp32 scores; bf16 scores get fp32 master scores, master grads and fp32 states
  (unless --pure-bf16); the keep-mask buffer T*1 byte (never sharded) and two bit-packed copies
  for the flip counts (step 0 and the last log, T/8 each); the STE's backward transient for the
  largest targeted weight (W*keep in b_w plus fp32 dL/dW, W and product: +12 B each);
  activations; the logits B*S*V*b_a and their gradient (the same again), plus up to four fp32 chunks of
  the chunked loss (at most 4 x 2^24 x 4 B: no fp32 copy of the logits).
Evaluation (`--task eval`, and the evaluation between training steps at --eval-batch-size, whose
  peak counts only where it exceeds the step's gradients, activations and logits, freed by then):
  the weights, one layer's activations (no grad), the logits in b_a and two fp32 loss chunks.
Activations (Korthikanti et al. 2022, "Reducing activation recomputation"): S*B*h*(34 + 5*a*S/h)
  bytes per layer in 16-bit without recomputation (scaled by b_a/2 in fp32); with SDPA / flash
  attention the 5*a*S/h term (the S x S scores) is not stored. With --gradient-checkpointing
  (transformers' non-reentrant checkpointing): the layer inputs S*B*h*b_a per layer plus one
  layer's activations during its recomputation. Only layers from the first targeted layer on
  store activations (nothing before it needs a backward pass), which is what makes local MFT on
  deep layers cheap. For Llama the formula counts dropout masks that do not exist but not
  SwiGLU's third projection, and frozen linears that need no weight gradient save no inputs; on
  tiny-llama (CPU, fp32, SDPA) it is within 0.85-1.05x of the bytes autograd actually saves
  (tests/test_planning.py). On `--gpu cpu` activations are in the weights' dtype (no autocast).
Full fine-tuning (`fft`), one process or DDP: 16-bit weights (not --pure-bf16) N*2 are what the
  forward uses; an fp32 master copy N*4, bf16 grads N*2 copied into fp32 master grads N*4, AdamW
  states 2*N*4 on the master: 20 B per parameter. fp32 weights or --pure-bf16: weights, grads and
  2 states in the weights' dtype (16 or 8 B per parameter).
LoRA (`lora`): frozen weights, adapters r*(in+out) per targeted module in fp32 (PEFT upcasts
  adapters), their grads and 2 AdamW states; activations as for masks. Not with --sharding fsdp.
Sharding: `--sharding fsdp` is `mftlab train --sharding fsdp` (FSDP2, one unit per decoder layer
  plus the root; SCALE_CONTRACT): trainable values cast to fp32 before sharding when 16-bit (not
  pure), so sharded values, grads (reduce dtype fp32) and AdamW states are 4+4+8 B per trainable
  value over g; frozen weights N*b_w/g; unsharded compute copies of 2 decoder layers x b_w (the
  peak is in the backward, where FSDP2 prefetches the next layer explicitly, on CPU/gloo as on
  CUDA; in the forward a CPU gathers one layer at a time, CUDA streams may have the next in
  flight), plus the root unit (embeddings, final norm, head) x b_w, gathered for the forward,
  resharded after it (the trainer passes reshard_after_forward=True to the root too) and gathered
  again for the whole backward; the keep buffers are replicated. AdamW creates its states in the
  first step, so the peak (states beside the backward's gathered units) is reached from the second
  step on, which is where bench/bench_scale.py reads it. Gradient accumulation reduce-scatters every
  micro-batch into the sharded gradient (already counted): no unsharded gradient is held across
  micro-batches. Rank 0 alone loads the whole model on the host, N*b_w; the other ranks build it
  on the meta device and receive their shards by broadcast, one tensor in flight (uncounted terms:
  host RAM, not GPU memory). MFT with fp32 scores gets no
  mixed-precision policy (as the trainer does it): a gathered layer holds its weights in b_w and its
  scores in fp32, and the exact sharded selection adds T*(4/g + 1 + 1/8) bytes of transients.
  Without sharding and with g > 1, DDP keeps gradient buckets: one more copy of the grads. A
  stated overhead is added: 10% of the sum plus 0.5 GiB of CUDA context (none on `--gpu cpu`).
Landscapes (`--plane random|models|line`, what `mftlab.analysis.planes` holds): the live model,
  then random: the pristine perturbed weights in their own dtype and two fp32 directions, cached
  (2 x perturbed x 4 B, up to 2^27 perturbed weights) or regenerated (2 x the largest tensor);
  models: A (pristine), B and C in the model's dtype (3 x N x b_w); line: A and B (2 x N x b_w);
  plus one fp32 chunk of a point's weights, one layer's activations (no grad) and the logits.
Time: FLOPs per token: forward 2*N_mm (N_mm = weights of every matmul, output head included)
  + attention 4*L*S*h; backward: fft 2 x forward; mask 2*N_mm (input grads) and 8*S*h of
  attention for the layers from the first targeted layer on (plus the head) + 2*T (score grads);
  checkpointing recomputes the forward of those layers. time = FLOPs / (g * peak * MFU), default
  MFU 0.4; per optimizer step add the memory-bound mask selection (kthvalue over T scores,
  ~3*T*b_s bytes) and AdamW update (~7 reads/writes of the trainable values) over bandwidth.
  Landscape: points x tokens per point (train + test subsets) x forward FLOPs + per point the
  weight update (bytes per perturbed weight by plane) over bandwidth; points split over g (evenly,
  also when a killed run resumes: the remaining points are dealt todo[rank::g]).

These are estimates; bench/bench_scale.py (CPU) and bench/gpu_check.sh (GPU) check them against
measurements (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.grid import parse_grid
from mftlab.mft.targeting import Target, TargetSpec
from mftlab.models.shapes import ModelShape
from mftlab.options_meta import at_least, between, check_options, doc, positive
from mftlab.plan.memory import dtype_name, eval_memory, landscape_memory, overhead_terms, train_memory
from mftlab.plan.terms import DTYPE_BYTES, GIB, GPU, GPUS, SCORE_BYTES, Term, fmt_bytes, fmt_count, fmt_seconds  # noqa: F401
from mftlab.plan.timing import eval_time, landscape_time, train_time
from mftlab.training.choices import METHODS, PRECISIONS, SHARDINGS  # what `mftlab train` runs

TASKS = ("train", "landscape", "eval")
PLANES = ("random", "models", "line")
ATTENTIONS = ("sdpa", "eager")


_COUNT = at_least(1)


@dataclass(frozen=True)
class PlanConfig:
    """What to plan; the options mirror `mftlab train` and `mftlab landscape`."""

    model: str
    task: str = field(
        default="train",
        metadata=doc("What to plan: a `mftlab train`, `mftlab landscape` or `mftlab eval` run.", choices=TASKS),
    )
    method: str = field(
        default="mask", metadata=doc("mask = MFT, fft = full fine-tuning, lora (train only).", choices=METHODS)
    )
    targets: str = "all-linear"  # the options of `mftlab train` (mftlab.cli.options.target_options)
    layers: str | None = None
    exclude: str | None = None
    score_dtype: str = field(
        default="fp32", metadata=doc("Score dtype, as `mftlab train --score-dtype`.", choices=tuple(SCORE_BYTES))
    )
    dtype: str = field(
        default="auto",
        metadata=doc(  # as `--dtype auto` loads
            "Weight dtype; auto = the config's dtype (float32 if it names none).",
            choices=("auto",) + tuple(DTYPE_BYTES),
        ),
    )
    precision: str = field(
        default="auto",
        metadata=doc(  # as the trainer picks on every GPU in the table
            "Activations: auto = bf16 autocast, as `mftlab train` uses on these GPUs.", choices=PRECISIONS
        ),
    )
    batch_size: int = field(
        default=8,
        metadata=doc(
            "train: examples per optimizer step over all GPUs (as `mftlab train`); landscape and eval: per GPU.",
            check=_COUNT,
        ),
    )
    eval_batch_size: int = field(
        default=16,
        metadata=doc(
            "train: batch of the evaluation between steps (as `mftlab train --eval-batch-size`; 0 = none).",
            check=at_least(0, " (0 = no evaluation)"),
        ),
    )
    grad_accum: int = field(
        default=1, metadata=doc("Micro-batches per optimizer step on each GPU (as `mftlab train`).", check=_COUNT)
    )
    seq_len: int = field(default=512, metadata=doc("Tokens per example.", check=_COUNT))
    gpus: int = field(default=1, metadata=doc("Number of GPUs (one process each).", check=_COUNT))
    sharding: str = field(
        default="none",
        metadata=doc(
            "As `mftlab train --sharding`: fsdp = FSDP2, one unit per decoder layer (fp32 sharded trainable values, "
            "bf16 compute).",
            choices=SHARDINGS,
        ),
    )
    gradient_checkpointing: bool = field(
        default=False,
        metadata=doc(
            "Activation checkpointing, as `mftlab train --gradient-checkpointing`.",
            flag="--gradient-checkpointing/--no-gradient-checkpointing",
        ),
    )
    pure_bf16: bool = field(
        default=False,
        metadata=doc("No fp32 master weights for 16-bit trainable values (as `mftlab train --pure-bf16`)."),
    )
    plane: str = field(
        default="random",
        metadata=doc(
            "Landscape: random directions around one model, the plane through three models, or the line through two.",
            choices=PLANES,
        ),
    )
    attention: str = field(
        default="sdpa", metadata=doc("sdpa/flash attention stores no S x S scores; eager does.", choices=ATTENTIONS)
    )
    gpu: str = field(
        default="h100",
        metadata=doc(
            "The card, or cpu: one CPU process (host memory, no CUDA context, fp32 activations).", choices=tuple(GPUS)
        ),
    )
    mfu: float = field(
        default=0.4,
        metadata=doc(
            "Model FLOPs utilisation assumed.",
            check=between(0, 1, closed="(]", hint="; typical values are 0.3-0.5 (default 0.4)"),
        ),
    )
    tokens: int | None = field(default=None, metadata=doc("Training tokens per epoch.", type=int, check=_COUNT))
    examples: int | None = field(
        default=None, metadata=doc("Or training examples per epoch (each --seq-len tokens).", type=int, check=_COUNT)
    )
    epochs: float = field(
        default=2.0, metadata=doc("Passes over the data (train).", check=positive(" (the paper trains 2 epochs)"))
    )
    lora_r: int = field(default=16, metadata=doc("LoRA rank (method lora).", check=_COUNT))
    grid: str = field(default="21x21", metadata=doc("Landscape points NXxNY (N alone: a line)."))
    landscape_tokens: int = field(
        default=4096,
        metadata=doc(
            "Landscape label tokens per subset (train and test each), as `landscape --max-tokens`.", check=_COUNT
        ),
    )
    overhead: float = 0.10
    context_gib: float = 0.5
    mftlab_version: str = field(default=__version__)

    def __post_init__(self):
        check_options(self, flag_words=True)  # choices and ranges, from each field's metadata
        if self.tokens is not None and self.examples is not None:
            raise ConfigError(f"--tokens {self.tokens} and --examples {self.examples} both given; give one of them")
        if self.overhead < 0 or self.context_gib < 0:
            raise ConfigError(f"overhead {self.overhead} and context {self.context_gib} GiB must be >= 0")
        nx, ny = parse_grid(self.grid)
        if self.task == "landscape" and self.plane == "line" and ny != 1:
            raise ConfigError(f"--plane line is 1-D but --grid is {nx}x{ny}; write --grid {nx}")
        if self.task == "landscape" and self.plane == "models" and ny == 1:
            raise ConfigError(f"--plane models needs a 2-D --grid such as 21x21, got {nx}x{ny}")
        if self.task == "train" and self.sharding == "fsdp" and self.method == "lora":
            raise ConfigError(
                "--sharding fsdp does not train LoRA adapters; use --method mask or fft, or --sharding none for lora"
            )
        if self.task == "train" and self.batch_size % (self.gpus * self.grad_accum):
            raise ConfigError(
                f"--batch-size {self.batch_size} is not a multiple of --gpus ({self.gpus}) x "
                f"--grad-accum ({self.grad_accum}); choose sizes that divide evenly"
            )
        self.target_spec()

    def target_spec(self) -> TargetSpec:
        return TargetSpec.parse(self.targets, self.layers, self.exclude)

    def default_targets(self) -> bool:
        return self.targets == "all-linear" and not self.layers and not self.exclude

    def to_dict(self) -> dict:
        return asdict(self)


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


def _largest_matrix(m: ModelShape) -> int:
    # Without a target list the biggest 2-D parameter is the embedding (or the untied head).
    return m.vocab * m.hidden


# -- the plan ----------------------------------------------------------------------------
_Estimate = tuple[list[Term], list[Term], float | None, float | None]  # memory, time, step and total seconds


def _first_backward_layer(c: PlanConfig, m: ModelShape, targets: list[Target]) -> int:
    """The first layer whose activations are kept for backward: 0 for fft, else the first targeted one."""
    layers_of = [t.layer for t in targets if t.layer is not None and t.layer < m.layers]
    return 0 if c.method == "fft" else (min(layers_of) if layers_of else m.layers)


def _run_total_terms(c: PlanConfig, step: float) -> list[Term]:
    """The optimizer steps of the whole run (--tokens or --examples, --epochs) and its time; the last is the total."""
    per_epoch = c.tokens if c.tokens is not None else c.examples * c.seq_len
    how = f"{c.tokens} tokens" if c.tokens is not None else f"{c.examples} examples x {c.seq_len}"
    all_tokens = c.epochs * per_epoch
    steps = math.ceil(all_tokens / (c.batch_size * c.seq_len))
    return [
        Term(
            "optimizer steps",
            f"ceil({c.epochs:g} epochs x {how} / ({c.batch_size} x {c.seq_len}))",
            steps,
            "steps",
            counted=False,
        ),
        Term("total", f"{steps} steps x {fmt_seconds(step)}", steps * step, "s", counted=False),
    ]


def _train_estimate(
    c: PlanConfig,
    m: ModelShape,
    targets: list[Target],
    notes: list[str],
    *,
    gpu: GPU,
    peak: float,
    b_w: int,
    b_a: int,
    first: int,
) -> _Estimate:
    """`mftlab train`'s memory and time; appends its notes to `notes`."""
    if c.method == "fft" and not c.default_targets():
        notes.append("--method fft trains every weight; --targets/--layers/--exclude are ignored")
    memory = train_memory(c, m, targets if c.method != "fft" else [], b_w=b_w, b_a=b_a, first=first)
    time = train_time(c, m, targets, gpu=gpu, peak=peak, b_w=b_w, first=first)
    step = sum(t.value for t in time if t.unit == "s" and t.counted)
    total = None
    if c.tokens is not None or c.examples is not None:
        time += _run_total_terms(c, step)
        total = time[-1].value
    else:
        notes.append("give --tokens or --examples for the run's total time")
    return memory, time, step, total


def _eval_estimate(
    c: PlanConfig, m: ModelShape, notes: list[str], *, gpu: GPU, peak: float, b_w: int, b_a: int
) -> _Estimate:
    """`mftlab eval`'s memory and time; appends its notes to `notes`."""
    memory = eval_memory(c, m, b_w, b_a)
    time, total = eval_time(c, m, gpu, peak), None
    if c.tokens is not None or c.examples is not None:
        tokens = c.tokens if c.tokens is not None else c.examples * c.seq_len
        total = tokens * time[0].value / (peak * c.mfu) / c.gpus
        time.append(
            Term(
                "total",
                f"{tokens} tokens x {fmt_count(time[0].value)} / ({peak / 1e12:g}e12 x {c.mfu}) / {c.gpus} GPUs",
                total,
                "s",
                counted=False,
            )
        )
    else:
        notes.append("give --tokens or --examples for the evaluation's total time")
    return memory, time, None, total


def _landscape_estimate(
    c: PlanConfig, m: ModelShape, targets: list[Target], notes: list[str], *, gpu: GPU, peak: float, b_w: int, b_a: int
) -> _Estimate:
    """`mftlab landscape`'s memory and time (points split over the GPUs); appends its notes to `notes`."""
    if c.plane == "random":
        perturbed = sum(t.numel for t in targets) if targets else m.matrix_params
    else:
        perturbed = m.params  # every parameter on which the models differ: all, at worst
        if not c.default_targets():
            notes.append(
                f"--plane {c.plane} moves every parameter on which the models differ; --targets/--layers are ignored"
            )
    largest = max((t.numel for t in targets), default=0) or _largest_matrix(m)
    memory = landscape_memory(c, m, b_w=b_w, b_a=b_a, perturbed=perturbed, largest=largest)
    time = landscape_time(c, m, gpu=gpu, peak=peak, perturbed=perturbed, b_w=b_w)
    points = parse_grid(c.grid)[0] * parse_grid(c.grid)[1]
    per_point = sum(t.value for t in time if t.unit == "s")
    total = points * per_point / c.gpus
    time.append(Term("total", f"{points} points x {fmt_seconds(per_point)} / {c.gpus} GPUs", total, "s", counted=False))
    notes.append("tokens per point count label tokens; prompt tokens add forward work on top")
    return memory, time, None, total


def _sharding_notes(c: PlanConfig, m: ModelShape, b_w: int) -> list[str]:
    if not (c.task == "train" and c.sharding == "fsdp"):
        return []
    notes = ["--sharding fsdp on 1 GPU shards nothing; it only adds the fp32 copies"] if c.gpus == 1 else []
    notes.append(
        f"--sharding fsdp: rank 0 alone loads the whole model into host memory ({fmt_bytes(m.params * b_w)}); "
        "the other ranks build it on the meta device and receive their shards by broadcast; rank 0 "
        "gathers the saved FFT model one file (<= 5 GiB) at a time"
    )
    return notes


def _model_summary(c: PlanConfig, m: ModelShape) -> dict:
    return {
        "name": m.name,
        "model_type": m.model_type,
        "params": m.params,
        "layers": m.layers,
        "hidden": m.hidden,
        "heads": m.heads,
        "vocab": m.vocab,
        "dtype": dtype_name(c, m),
    }


def plan(c: PlanConfig, m: ModelShape, targets: list[Target]) -> Plan:
    """The estimate for config `c` on model shape `m` with these targeted weights.

    `targets` are the weights masked (mask), adapted (lora) or perturbed (landscape; empty =
    every weight matrix); fft ignores them.
    """
    gpu = GPUS[c.gpu]
    b_w = DTYPE_BYTES[dtype_name(c, m)]
    bf16 = c.precision == "bf16" or (c.precision == "auto" and c.gpu != "cpu")  # no autocast on CPU
    b_a = 2 if bf16 else b_w
    peak = gpu.peak_bf16 if (bf16 or b_w == 2) else gpu.peak_fp32
    notes = []
    if m.max_positions and c.seq_len > m.max_positions:
        notes.append(f"--seq-len {c.seq_len} exceeds the model's {m.max_positions} positions")
    if c.task == "train" and c.method != "fft" and not targets:
        raise ConfigError(f"--method {c.method} needs targeted weights; check --targets/--layers")
    first = _first_backward_layer(c, m, targets)
    if c.task == "train":
        estimate = _train_estimate(c, m, targets, notes, gpu=gpu, peak=peak, b_w=b_w, b_a=b_a, first=first)
    elif c.task == "eval":
        estimate = _eval_estimate(c, m, notes, gpu=gpu, peak=peak, b_w=b_w, b_a=b_a)
    else:
        estimate = _landscape_estimate(c, m, targets, notes, gpu=gpu, peak=peak, b_w=b_w, b_a=b_a)
    memory, time, step, total = estimate
    memory += overhead_terms(c, memory)
    per_gpu = sum(t.value for t in memory if t.counted and t.unit == "B")
    notes += _sharding_notes(c, m, b_w)
    notes.append("estimates; BENCHMARKS.md compares them with measurements (bench/bench_scale.py, bench/gpu_check.sh)")
    return Plan(
        c.to_dict(),
        _model_summary(c, m),
        sum(t.numel for t in targets),
        first if c.task == "train" else None,
        memory,
        per_gpu,
        gpu.memory,
        per_gpu <= gpu.memory,
        time,
        step,
        total,
        notes,
    )


def make_plan(config: PlanConfig) -> Plan:
    """Plan `config.model` from its config alone (meta device, no weights)."""
    from mftlab.models.shapes import model_shape

    needs_targets = (config.task == "train" and config.method != "fft") or (
        config.task == "landscape" and not config.default_targets()
    )
    shape, targets = model_shape(config.model, config.target_spec() if needs_targets else None)
    return plan(config, shape, targets)

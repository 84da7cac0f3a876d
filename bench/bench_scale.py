"""Benchmark: CPU rehearsal of the 7B code paths, peak memory per process beside `mftlab plan`'s estimate.

Writes (or replaces) the section `## Scale rehearsal (CPU)` of BENCHMARKS.md.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_scale.py            # every case, one after another
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_scale.py --case mft  # one case (prints its JSON)

The model has LLaMA-2-7B's exact layer shapes (hidden 4096, intermediate 11008, 32 heads, vocab
32000) with 2 decoder layers (667M parameters), built from its config with random weights, directly
in bf16 (no download, no fp32 detour). Cases, each in a fresh process, never two at once:
- mft: one `mftlab train --method mask` step (layers 1, fp32 scores), through `mftlab.training.loop.train`;
- fft: one `--method fft` step on 1 process, bf16 with `--pure-bf16` (AdamW on the bf16 weights:
  8 B per parameter; with fp32 master weights a 2-layer 7B-shaped model needs 20 B per parameter,
  13 GiB, too much for this shared 24 GiB host);
- fft-fsdp: the same step on 2 processes with `--sharding fsdp` (torchrun, gloo), per process;
- fft-fsdp-accum4: the same with `--grad-accum 4` at the same micro-batch (1 example per process):
  FSDP reduce-scatters every micro-batch, so no unsharded gradient is held (goal: within 1.10x);
- mft-all: MFT on every linear of both layers (fp32 scores), 1 process: the keep-mask is held once
  (bool) beside two bit-packed copies for the flip counts;
- mft-fsdp-load: the trainer's load for MFT (`q_proj` of layer 1) on 2 processes with `--sharding
  fsdp` from a saved folder, up to the sharded, filled model: rank 0 alone reads it, rank 1 builds it on
  the meta device and receives its shards by broadcast; both ranks' peaks;
- eval-16: one `evaluate` pass at batch 16 (16 x 128 tokens), 1 process;
- random / models: one grid point (plus the models as markers) of a random-plane / models-plane
  landscape (B and C: perturbed bf16 copies, given as loaders).
Measured = peak RSS of the case (`ru_maxrss`; for training, read at the end of the SECOND optimizer
step, before the output is saved: AdamW creates its states lazily in the first step, so only from
the second step on do they coexist with the backward's transients, which under FSDP are the gathered
layers and root; a first-step reading misses 1.24 GiB there) - peak RSS of a baseline process that
imports the same modules, builds the tokenizer and the data but no model. Estimate = `mftlab plan`
(the library's `make_plan`) for the same config with `--gpu cpu` (no CUDA context, fp32-or-bf16 activations as the
CPU runs them). Goal: every estimate within 20% of the measurement.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SECTION = "Scale rehearsal (CPU)"
SHAPE = dict(hidden=4096, intermediate=11008, heads=32, vocab=32000, layers=2)
SEQ = 128  # tokens per example (every example exactly this long)
ACCUM = ("fft-fsdp", "fft-fsdp-accum4", "fft-fsdp-ckpt", "fft-fsdp-accum4-ckpt")
CASES = ("mft", "mft-all", "fft", *ACCUM, "mft-fsdp-load", "eval-16", "random", "models")
TWO_PROCESSES = (*ACCUM, "mft-fsdp-load")
GIB = 2**30


def _peak() -> int:
    """Peak RSS of this process: the number the metrics rows report as peak_mem_gib on the CPU."""
    from mftlab.training.peak_memory import local_peak_bytes

    return int(local_peak_bytes("cpu")[0])


def llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=SHAPE["vocab"],
        hidden_size=SHAPE["hidden"],
        intermediate_size=SHAPE["intermediate"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        num_key_value_heads=SHAPE["heads"],
        max_position_embeddings=4096,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )


def build(seed: int = 0, shift: float = 0.0):
    """The 2-layer 7B-shaped Llama in bf16, initialised in bf16; `shift` adds seeded noise (another 'model')."""
    import torch
    from transformers import LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = LlamaForCausalLM(llama_config())
    finally:
        torch.set_default_dtype(previous)
    model.config._attn_implementation = "sdpa"
    if shift:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.bfloat16).mul_(shift))
    return model.eval()


def write_data(folder: str, n: int = 8) -> str:
    """n prompt/completion records whose tokenisation is exactly SEQ tokens (char tokenizer + bos/eos)."""
    path = os.path.join(folder, "data.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps({"prompt": ("q%d " % i).ljust(SEQ // 2, "x"), "completion": "y" * (SEQ // 2 - 2)}) + "\n"
            )
    return path


def train_config(kind: str, folder: str):
    from mftlab.training.config import TrainConfig

    extra = {"pure_bf16": True} if kind.startswith("fft") else {}
    if kind in TWO_PROCESSES:
        extra["sharding"] = "fsdp"
    if kind == "mft-fsdp-load":
        extra["targets"] = "q_proj"
    if kind.endswith("-ckpt"):
        extra["gradient_checkpointing"] = True
    method = "mask" if kind.startswith("mft") else "fft"
    accum = 4 if "accum4" in kind else 1
    batch = 2 * accum if kind in TWO_PROCESSES else 1
    return TrainConfig(
        model=os.path.join(folder, "model") if kind == "mft-fsdp-load" else "bench-7b-shapes",
        data=write_data(folder),
        out=os.path.join(folder, "out"),
        method=method,
        layers="1" if kind in ("mft", "mft-fsdp-load") else None,
        dtype="bfloat16",
        batch_size=batch,
        grad_accum=accum,
        max_steps=2,
        max_seq_len=SEQ + 8,
        log_every=1,
        lr=1e-5,
        **extra,
    )


def plan_config(kind: str, config_dir: str):
    from mftlab.plan.planner import PlanConfig

    common = dict(model=config_dir, dtype="bfloat16", seq_len=SEQ, gpu="cpu")
    train = dict(common, eval_batch_size=0)  # no --eval-data in the training cases
    if kind == "mft":
        return PlanConfig(**train, method="mask", layers="1", batch_size=1)
    if kind == "mft-all":
        return PlanConfig(**train, method="mask", batch_size=1)
    if kind == "mft-fsdp-load":
        return PlanConfig(**train, method="mask", targets="q_proj", layers="1", batch_size=2, gpus=2, sharding="fsdp")
    if kind == "fft":
        return PlanConfig(**train, method="fft", batch_size=1, pure_bf16=True)
    if kind in ACCUM:
        accum = 4 if "accum4" in kind else 1
        return PlanConfig(
            **train,
            method="fft",
            batch_size=2 * accum,
            grad_accum=accum,
            gpus=2,
            sharding="fsdp",
            pure_bf16=True,
            gradient_checkpointing=kind.endswith("-ckpt"),
        )
    if kind == "eval-16":
        return PlanConfig(**common, task="eval", batch_size=16)
    return PlanConfig(**common, task="landscape", plane=kind, grid="1x2", batch_size=1)


# -- one case, in this process ------------------------------------------------------------------
def _baseline(folder: str) -> dict:
    from mftlab.analysis.landscape import prepare_data  # noqa: F401 - the same imports as the cases
    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.data import load_examples
    from mftlab.training.loop import train  # noqa: F401

    tok = build_char_tokenizer()
    load_examples(write_data(folder), tok, SEQ + 8)
    return {"peak": _peak()}


def _train(kind: str, folder: str) -> dict:
    from mftlab.models.loading import LoadedModel
    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.loop import train

    if kind == "mft-fsdp-load":  # the checkpoint is read by rank 0 alone (the folder is saved by the driver)
        return _load_and_shard(kind, folder)
    model = build()
    peaks = []

    def progress(event):
        if event.event == "step" and event.step == 2:
            peaks.append(_peak())  # the end of the second optimizer step (steady state), before any save

    started = time.perf_counter()
    train(train_config(kind, folder), progress=progress, loaded=LoadedModel(model, build_char_tokenizer(), "bench"))
    return {"peak": peaks[0] if peaks else _peak(), "seconds": time.perf_counter() - started}


def _load_and_shard(kind: str, folder: str) -> dict:
    """The trainer's load under FSDP, alone: rank 0 reads the folder, rank 1 builds on the meta device,
    both shard and rank 0 broadcasts (the same functions `mftlab.training.loop` calls)."""
    import torch
    import torch.distributed as dist

    from mftlab.training import sharding
    from mftlab.training.model_setup import prepare_model

    config = train_config(kind, folder)
    dist.init_process_group("gloo")
    try:
        started = time.perf_counter()
        model, _, _ = prepare_model(config, None, rank0_loads=True)
        param_dtype = sharding.fsdp_param_dtype(config.precision, "no", model)
        sharding.shard_loaded(model, torch.device("cpu"), config.pure_bf16, param_dtype, rank0_loads=True)
        dist.barrier()
        return {"peak": _peak(), "seconds": time.perf_counter() - started}
    finally:
        dist.destroy_process_group()


def _evaluate(folder: str) -> dict:
    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.data import load_examples
    from mftlab.training.evaluation import evaluate

    tok = build_char_tokenizer()
    examples, _ = load_examples(write_data(folder, 16), tok, SEQ + 8)
    model = build()
    started = time.perf_counter()
    evaluate(model, tok, examples, 16, generate=False)
    return {"peak": _peak(), "seconds": time.perf_counter() - started}


def _landscape(kind: str, folder: str) -> dict:
    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.data import load_examples

    tok = build_char_tokenizer()
    examples, _ = load_examples(write_data(folder, 2), tok, SEQ + 8)
    data = prepare_data(examples, tok.pad_token_id, batch_size=1)
    model = build()
    ranges = ((0.5, 1.0), (0.5, 1.0)) if kind == "random" else ((0.3, 1.0), (0.3, 1.0))
    config = LandscapeConfig(kind, (1, 2), ranges)  # 2-D: two directions, 2 points
    models = [model] if kind == "random" else [model, lambda: build(1, 0.01), lambda: build(2, 0.02)]
    started = time.perf_counter()
    loss_landscape(models, data, data, config, os.path.join(folder, "landscape"))
    return {"peak": _peak(), "seconds": time.perf_counter() - started}


def run_case(kind: str, work: str | None = None) -> dict:
    import torch

    torch.set_num_threads(2)
    if work:  # a two-process case: each rank its own sub-folder beside the shared model folder
        folder = os.path.join(work, f"rank{os.environ.get('RANK', '0')}")
        os.makedirs(folder, exist_ok=True)
        if kind == "mft-fsdp-load":
            os.symlink(os.path.join(work, "model"), os.path.join(folder, "model"))
        return _train(kind, folder)
    with tempfile.TemporaryDirectory() as folder:
        if kind == "baseline":
            return _baseline(folder)
        if kind in ("random", "models"):
            return _landscape(kind, folder)
        if kind == "eval-16":
            return _evaluate(folder)
        return _train(kind, folder)


# -- the driver ---------------------------------------------------------------------------------
ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="2")


def _subprocess(kind: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        result = os.path.join(folder, "result.json")
        if kind == "mft-fsdp-load":  # a real checkpoint folder for rank 0 to read
            build().save_pretrained(os.path.join(folder, "work", "model"))
            _char_tokenizer().save_pretrained(os.path.join(folder, "work", "model"))
        if kind in TWO_PROCESSES:
            torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
            cmd = [
                torchrun,
                "--nproc_per_node",
                "2",
                "--master_port",
                "29517",
                __file__,
                "--case",
                kind,
                "--result",
                result,
                "--work",
                os.path.join(folder, "work"),
            ]
        else:
            cmd = [sys.executable, __file__, "--case", kind, "--result", result]
        proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(result):
            return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
        with open(result) as f:
            row = json.load(f)
        if os.path.exists(result + ".rank1"):
            with open(result + ".rank1") as f:
                row["peak_rank1"] = json.load(f)["peak"]
        return row


def _char_tokenizer():
    from mftlab.models.tokenizer import build_char_tokenizer

    return build_char_tokenizer()


@functools.lru_cache(maxsize=None)
def _plan(kind: str):
    from mftlab.plan.planner import make_plan

    with tempfile.TemporaryDirectory() as folder:
        llama_config().save_pretrained(folder)
        return make_plan(plan_config(kind, folder))


def estimate(kind: str, rank: int = 0) -> float:
    """The plan's per-process total; for mft-fsdp-load the load peak of `rank` from the plan's terms:
    its shards plus, on rank 0, the whole checkpoint it broadcasts from, on a rank > 0 the tensor in
    flight (the plan's uncounted `host RAM at load` terms; on the CPU host RAM is the memory).
    """
    plan = _plan(kind)
    if kind != "mft-fsdp-load":
        return plan.memory_per_gpu
    terms = {t.name: t.value for t in plan.memory}
    shards = terms["weights (frozen)"] + terms["scores"]
    load = terms["host RAM at load, rank 0 (fsdp)" if rank == 0 else "host RAM at load, ranks > 0 (fsdp)"]
    return shards + load


def measure_all(only: list[str] | None = None, previous: dict | None = None, log=print) -> dict:
    """Measure every case (or those in `only`, keeping `previous` rows for the rest); plans are always recomputed."""
    rows = dict(previous or {})
    for kind in ("baseline",) + CASES:
        if only and kind not in only and kind in rows:
            pass  # measured earlier (same command, same machine), kept
        else:
            rows[kind] = _subprocess(kind)
        if kind != "baseline":
            rows[kind]["plan"] = estimate(kind)
        if kind == "mft-fsdp-load":
            rows[kind]["plan_rank1"] = estimate(kind, 1)
        log(f"{kind}: {rows[kind]}")
    return rows


def _previous_rows() -> dict:
    from report import BENCHMARKS

    if not os.path.exists(BENCHMARKS):
        return {}
    text = open(BENCHMARKS).read()
    start = text.find(f"## {SECTION}")
    m = re.search(r"<!-- rows: (\{.*?\}) -->", text[start:]) if start >= 0 else None
    return json.loads(m.group(1)) if m else {}


DESCRIPTIONS = {
    "mft": "MFT step (`--method mask --layers 1`, fp32 scores, batch 1 x 128 tokens), 1 process",
    "fft": "FFT step (`--method fft --pure-bf16`, batch 1 x 128), 1 process",
    "fft-fsdp": "FFT step, 2 processes `--sharding fsdp --pure-bf16` (torchrun, gloo), per process",
    "fft-fsdp-accum4": "the same, `--grad-accum 4` (same micro-batch: 1 example per process), per process",
    "fft-fsdp-ckpt": "FFT step, 2 processes `--sharding fsdp --pure-bf16 --gradient-checkpointing`, per process",
    "fft-fsdp-accum4-ckpt": "the same, `--grad-accum 4` (same micro-batch), per process",
    "mft-all": "MFT step, every linear of both layers (fp32 scores, batch 1 x 128), 1 process",
    "mft-fsdp-load": "load for MFT (`q_proj`, layer 1), 2 processes `--sharding fsdp`, a saved folder: rank 0 (reads it)",
    "eval-16": "`evaluate` at batch 16 x 128 tokens (loss, token accuracy), 1 process",
    "random": "random-plane landscape, one point (directions regenerated)",
    "models": "models-plane landscape, one point (A, B, C in bf16)",
}


def table(rows: dict) -> str:
    base = rows["baseline"].get("peak", 0)
    lines = ["| case | `mftlab plan` (GiB) | measured (GiB) | measured / plan | within 20% |", "|---|---|---|---|---|"]

    def line(what: str, plan: float, peak: float | None, problem: str | None) -> str:
        if peak is None:
            return f"| {what} | {plan / GIB:.2f} | {problem} | | |"
        measured = (peak - base) / GIB
        ratio = measured / (plan / GIB)
        return (
            f"| {what} | {plan / GIB:.2f} | {measured:.2f} | {ratio:.2f} | {'yes' if abs(ratio - 1) <= 0.2 else 'NO'} |"
        )

    for kind in CASES:
        r = rows.get(kind, {"pending": "not measured yet", "plan": estimate(kind)})
        problem = r.get("pending") or ("failed: " + r["error"] if "error" in r else None)
        lines.append(line(DESCRIPTIONS[kind], r["plan"], r.get("peak"), problem))
        if kind == "mft-fsdp-load":
            what = DESCRIPTIONS[kind].replace("rank 0 (reads it)", "rank 1 (meta device, broadcast)")
            lines.append(line(what, r.get("plan_rank1", estimate(kind, 1)), r.get("peak_rank1"), problem))
    return "\n".join(lines) + "\n\n" + checks(rows)


def checks(rows: dict) -> str:
    """The two claims beside the table: accumulation costs no extra copy; rank 1 never holds the model."""
    out = []
    for suffix, how in (("", ""), ("-ckpt", ", with `--gradient-checkpointing`")):
        one, four = rows.get(f"fft-fsdp{suffix}", {}), rows.get(f"fft-fsdp-accum4{suffix}", {})
        if "peak" in one and "peak" in four:
            base = rows["baseline"].get("peak", 0)
            ratio = (four["peak"] - base) / (one["peak"] - base)
            out.append(
                f"- FSDP `--grad-accum 4` / `--grad-accum 1` at the same micro-batch{how}, peak per process: "
                f"{ratio:.3f} (goal <= 1.10: {'yes' if ratio <= 1.10 else 'NO'})"
            )
    load = rows.get("mft-fsdp-load", {})
    if "peak" in load and "peak_rank1" in load:
        model = _plan("mft-fsdp-load").model["params"] * 2  # bf16 bytes
        gap = (load["peak"] - load["peak_rank1"]) / model
        out.append(
            f"- rank 0 peak - rank 1 peak = {gap:.2f} x the model's bytes ({model / GIB:.2f} GiB) "
            f"(goal >= 0.30: {'yes' if gap >= 0.30 else 'NO'})"
        )
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("baseline",) + CASES)
    parser.add_argument("--result", help="where a --case run writes its JSON")
    parser.add_argument("--work", help="the case's working folder (holds the saved model of mft-fsdp-load)")
    parser.add_argument(
        "--only",
        help="comma-separated cases to measure again; the others keep the rows "
        "already in BENCHMARKS.md (e.g. --only fft-fsdp after merging the fsdp branch)",
    )
    args = parser.parse_args()
    if args.case:
        out = run_case(args.case, args.work)
        rank = int(os.environ.get("RANK", "0"))
        if args.result:  # rank 0's row; the other ranks' peaks beside it
            with open(args.result if rank == 0 else f"{args.result}.rank{rank}", "w") as f:
                json.dump(out, f)
        print(json.dumps(out))
        return
    only = args.only.split(",") if args.only else None
    rows = measure_all(only, _previous_rows() if only else None)
    write(rows)
    print(table(rows))


def write(rows: dict) -> None:
    """The BENCHMARKS.md section from measured `rows` (the rows are stored in it, for --only)."""
    from report import machine, write_section

    params = sum(
        v
        for v in [
            SHAPE["vocab"] * SHAPE["hidden"] * 2
            + SHAPE["layers"]
            * (4 * SHAPE["hidden"] ** 2 + 3 * SHAPE["hidden"] * SHAPE["intermediate"] + 2 * SHAPE["hidden"])
            + SHAPE["hidden"]
        ]
    )
    body = f"""Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_scale.py` (part of `make bench`)
Machine: {machine()}

LLaMA-2-7B's layer shapes (hidden 4096, intermediate 11008, 32 heads, vocab 32000) with 2 decoder
layers: {params:,} parameters, bf16, random weights built from the config. Each case runs in its own
process; measured = peak RSS of the case - peak RSS of a baseline process with the same imports and
data but no model ({rows["baseline"].get("peak", 0) / GIB:.2f} GiB). For training the peak is read at
the end of the second optimizer step (fsdp: on rank 0). Plan = `make_plan` with the same settings and
`--gpu cpu`.

<!-- rows: {json.dumps(rows)} -->
{table(rows)}

Training rows are read at the second step because AdamW creates its states in the first one: read at
the first step, the fsdp row measured 3.06 GiB (ratio 0.73), the backward's gathered layers and root
having been freed before the states existed; from the second step on both are held at once.

Gradient accumulation under FSDP reduce-scatters every micro-batch into the sharded gradient, so
`--grad-accum 4` holds no unsharded gradient. It still holds what any accumulation holds: the
accumulated (sharded) gradient of the step's first micro-batches stays alive while the next
micro-batch's activations exist, whereas with `--grad-accum 1` the gradients only appear as the
backward frees the activations. Here that is 1/2 of the model's bf16 gradient (2 processes, a root
unit that is 40% of the parameters), so the ratio above exceeds 1.10; the plan, which always counts the
gradients beside the activations, is the `--grad-accum 4` peak. The code before this change kept a
full unsharded gradient for the step instead. Measured once against it, the same two cases run with
the code of commit cc04bf1 (`git worktree add /tmp/old cc04bf1`, this file copied there, `torchrun
--nproc_per_node 2 bench/bench_scale.py --case fft-fsdp-accum4 --work DIR` with `PYTHONPATH=/tmp/old`):
`--grad-accum 1` 4.20 GiB, `--grad-accum 4` 5.20 GiB (1.24x, +0.99 GiB: the unsharded gradient); with
this change 4.25 and 4.87 GiB (1.15x, +0.62 GiB: exactly the sharded bf16 gradient, 667M x 2 B / 2).
On 8 GPUs the accumulated gradient is 1/8 of the model's, not all of it (7B, fp32 reduce: +3.1 GiB
instead of +25 GiB per GPU).

The load rows stop once the model is sharded and filled (`shard_loaded`, the trainer's own load
sequence): rank 0 reads the saved folder (its peak: the checkpoint beside its shards), rank 1 builds
the model on the meta device and receives its shards tensor by tensor (its peak: its shards and the
largest tensor in flight).

FFT uses `--pure-bf16` here because fp32 master weights (20 B per parameter, 12.4 GiB for this model)
do not fit beside four other engineers on this 24 GiB host; the planner's master-weights terms are
checked against real tensors in tests/test_planning.py instead. Rows may come from separate runs
(`--only` keeps the others; the landscape rows were measured one case at a time on a shared, loaded
host, so the stored seconds are not timings of mftlab); `make bench` reruns them all in one go.
"""
    write_section(SECTION, body)


if __name__ == "__main__":
    main()

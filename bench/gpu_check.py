"""GPU check: one short script for one H100 / H200 (at most ~13 minutes), with a clean CPU fallback.

On CUDA it builds a Llama-shaped model of ~300M parameters (hidden 1024, 24 layers, intermediate
2816, vocab 32000) in bf16 and measures, on one fixed batch (8 x 512 random tokens):
- MFT step vs FFT step: the trainer's `--method mask` step (mftlab.mft.masking wrappers, AdamW on the
  fp32 scores, one exact top-k refresh per optimizer step) against AdamW on every weight; median of
  the timed steps after warm-up, `torch.cuda.synchronize()` before every clock read;
- peak GPU memory of each (`torch.cuda.max_memory_allocated`, reset before each variant) against
  `mftlab plan` (mftlab.plan.planner.make_plan) for the same config, with the relative error;
- masks equal between CPU and GPU: the same scores (after the MFT steps, cast through bf16 so ties
  are common) selected on both devices by mftlab.mft.selection at every granularity, compared bit by bit;
- landscape point vs eval pass: `loss_landscape()` on a small random plane against one `loss_sums` pass
  over the same train + test batches.

Then the 7B stage (bench/gpu_check_7b.py and bench/gpu_check_7b_commands.py, the rest of the 13
minutes): LLaMA-2-7B's full shapes built on the GPU in bf16, MFT on layers 4-7 with and without
gradient checkpointing, one models-plane landscape point, a 1-process `--sharding fsdp` smoke run,
then the real commands on a saved copy: FSDP FFT at `--grad-accum 4` (torchrun, 1 process),
`mftlab eval`, `mftlab baseline --kind wanda / snip` with `--device cuda`, and a 2x2 models-plane
`mftlab landscape`, each beside `mftlab plan` or a plain eval pass. Commands that would start after
the 13-minute deadline are marked "skipped"; the rows measured before stand. Last, the protocol stage
(bench/gpu_check_protocol.py, until 870 s): `mftlab protocol --dry-run` on the README's 7B config and a
real protocol run on this GPU with a 7B-wide, 2-layer model, each step's peak memory beside its plan.

Every row of the table (and of `rows` in bench/gpu_results.json) says where its figure comes from:
"measured" (on this machine, by this run) or "plan" (`mftlab plan` arithmetic, `make_plan`).

Without CUDA it runs the same code on a tiny model for a few steps (< 60 s) and the protocol's 7B
dry run (no GPU needed), marks the results "cpu fallback", and the section says that the GPU rows (the
7B and protocol stages' included) are pending.

    bash bench/gpu_check.sh                      # writes bench/gpu_results.json and its BENCHMARKS.md section
    .venv/bin/python bench/gpu_check.py --cpu --no-write --out /tmp/gpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from report import ROOT, git_revision, machine, write_section  # noqa: E402

TITLE = "GPU check"
COMMAND = "bash bench/gpu_check.sh"
BUDGET_S = 750  # the whole check, GPU mode: commands of the 7B stage start only before this (~13 minutes)
PROTOCOL_BUDGET_S = 870  # the protocol stage (after the 7B stage) stops here, before gpu_check.sh's 900-s timeout
MEASURED, PLAN = "measured", "plan"
GPU_SIZE = dict(
    hidden=1024,
    layers=24,
    inter=2816,
    vocab=32000,
    heads=16,
    kv=8,
    batch=8,
    seq=512,
    steps=10,
    warmup=3,
    grid=3,
    eval_tokens=4096,
)
CPU_SIZE = dict(
    hidden=128,
    layers=2,
    inter=352,
    vocab=1000,
    heads=4,
    kv=2,
    batch=2,
    seq=64,
    steps=3,
    warmup=1,
    grid=2,
    eval_tokens=256,
)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def build(size: dict, device: str, dtype):
    """A seeded Llama-shaped model built directly on `device` in `dtype`, and one fixed batch."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=size["vocab"],
        hidden_size=size["hidden"],
        intermediate_size=size["inter"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv"],
        max_position_embeddings=size["seq"],
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config)
        model = model.to(dtype)
        ids = torch.randint(3, size["vocab"], (size["batch"], size["seq"]), generator=torch.Generator().manual_seed(0))
    return config, model, ids.to(device)


def _peak_reset(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak(device: str) -> int | None:
    import torch

    return int(torch.cuda.max_memory_allocated()) if device == "cuda" else None


def timed_steps(step, size: dict, device: str) -> list[float]:
    """Seconds of each of size["steps"] calls of `step`, after size["warmup"] untimed ones (device-synchronised)."""
    for _ in range(size["warmup"]):
        step()
    times = []
    for _ in range(size["steps"]):
        _sync(device)
        started = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - started)
    return times


def time_steps(variant: str, size: dict, device: str, dtype) -> dict:
    """Median step seconds and peak memory of `fft` or `mft` on a fresh model."""
    import torch
    import torch.nn.functional as F

    from mftlab.mft.masking import SelectionConfig, attach_masks, current_keep, refresh_masks
    from mftlab.mft.targeting import TargetSpec, resolve_targets
    from mftlab.mft.warm_select import WarmSelector

    _peak_reset(device)
    _, model, ids = build(size, device, dtype)
    layers, selection, warm = None, SelectionConfig(mask_ratio=0.1), WarmSelector()
    if variant == "mft":
        layers = attach_masks(
            model, resolve_targets(model, TargetSpec.parse("all-linear")), score_init="random", score_std=0.02, seed=0
        )
        refresh_masks(layers, selection, warm)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()

    def step() -> float:
        logits = model(input_ids=ids).logits  # (B, T, V), bf16 on the GPU
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if layers is not None:
            refresh_masks(layers, selection, warm)  # once per optimizer step, as in the trainer
        return float(loss.detach())  # a device sync, like the trainer's loss read-out

    times = timed_steps(step, size, device)
    result = {
        "step_s": statistics.median(times),
        "steps": len(times),
        "peak_bytes": _peak(device),
        "trainable": sum(p.numel() for p in params),
    }
    if layers is not None:
        result["scores"] = {n: layer.mask_scores.detach() for n, layer in list(layers.items())[:4]}
        result["keep_ratio"] = sum(int(k.sum()) for k in current_keep(layers).values()) / max(
            sum(k.numel() for k in current_keep(layers).values()), 1
        )
    model = optimizer = layers = None  # free the device memory before the next stage (step() holds them)
    return result


def masks_equal_cpu_gpu(scores: dict, device: str) -> dict:
    """Select keep-masks from the same scores on CPU and on `device`; compare bit by bit."""
    import torch

    from mftlab.mft.selection import select_keep

    # Through bf16: many exact ties, which the selection must break identically (lowest index first).
    values = {n: s.to(torch.bfloat16).float() for n, s in scores.items()}
    checked, equal = 0, True
    for granularity in ("tensor", "row", "global"):
        for ratio in (0.1, 0.5):
            on_cpu = select_keep({n: v.cpu() for n, v in values.items()}, ratio, granularity)
            on_dev = select_keep({n: v.to(device) for n, v in values.items()}, ratio, granularity)
            for name in values:
                checked += 1
                equal &= bool(torch.equal(on_cpu[name], on_dev[name].cpu()))
    return {
        "equal": equal,
        "comparisons": checked,
        "weights": sum(v.numel() for v in values.values()),
        "device": device,
    }


def landscape_vs_eval(size: dict, device: str, dtype) -> dict:
    """Seconds per landscape point against one eval pass over the same train + test batches."""
    import torch

    from mftlab.analysis.directions import DirectionSpec
    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
    from mftlab.training.data import Example
    from mftlab.training.evaluation import loss_sums

    _, model, _ = build(size, device, dtype)
    gen = torch.Generator().manual_seed(1)

    def examples(n):
        out = []
        for _ in range(n):
            ids = torch.randint(3, size["vocab"], (size["seq"],), generator=gen).tolist()
            out.append(Example(ids, list(ids), [ids[0]]))
        return out

    per_set = max(1, size["eval_tokens"] // size["seq"])
    train = prepare_data(examples(per_set), 0, size["batch"], size["eval_tokens"], device)
    test = prepare_data(examples(per_set), 0, size["batch"], size["eval_tokens"], device)
    with torch.no_grad():
        loss_sums(model, train.batches)  # warm-up
        times = []
        for _ in range(3):
            _sync(device)
            started = time.perf_counter()
            loss_sums(model, train.batches)
            loss_sums(model, test.batches)
            _sync(device)
            times.append(time.perf_counter() - started)
    eval_s = statistics.median(times)
    n = size["grid"]
    with tempfile.TemporaryDirectory() as folder:
        config = LandscapeConfig("random", (n, n), None, DirectionSpec(seed=0))
        _sync(device)
        started = time.perf_counter()
        loss_landscape([model], train, test, config, os.path.join(folder, "ls"))
        _sync(device)
        wall = time.perf_counter() - started
        with open(os.path.join(folder, "ls", "landscape.points-0.jsonl")) as f:
            inner = statistics.median(json.loads(line)["seconds"] for line in f)
    points = n * n + 1  # the grid plus the centre marker
    del model
    return {
        "eval_pass_s": eval_s,
        "point_wall_s": wall / points,
        "point_inner_s": inner,
        "points": points,
        "label_tokens": train.tokens + test.tokens,
    }


def plan_estimates(config, size: dict, gpu_name: str) -> dict:
    """`mftlab plan` for the same model and batch (MFT and FFT), to compare with the measured peaks."""
    from mftlab.plan.planner import PlanConfig, make_plan

    gpu = "h200" if "H200" in gpu_name.upper() else "h100"
    with tempfile.TemporaryDirectory() as folder:
        config.save_pretrained(folder)
        out = {}
        for method in ("mask", "fft"):
            p = make_plan(
                PlanConfig(
                    model=folder,
                    method=method,
                    dtype="bfloat16",
                    precision="bf16",
                    batch_size=size["batch"],
                    seq_len=size["seq"],
                    gpu=gpu,
                )
            )
            out[method] = {"memory_bytes": p.memory_per_gpu, "step_s": p.step_seconds}
    return out


def _rel(measured, estimate):
    return None if not measured or estimate is None else (estimate - measured) / measured


def table_row(check: str, source: str, figure: str, baseline: str = "", ratio: str = "") -> dict:
    """One row of the section's table. `source` says where `figure` comes from: MEASURED (this run, on
    this machine; pending rows say so in `figure`) or PLAN (`mftlab plan` arithmetic)."""
    if source not in (MEASURED, PLAN):
        raise ValueError(f"source {source!r}: a row is {MEASURED!r} or {PLAN!r}")
    return {"check": check, "source": source, "figure": figure, "baseline": baseline, "ratio": ratio}


def run(force_cpu: bool = False) -> dict:
    import torch

    cuda = torch.cuda.is_available() and not force_cpu
    device = "cuda" if cuda else "cpu"
    size = GPU_SIZE if cuda else CPU_SIZE
    dtype = torch.bfloat16 if cuda else torch.float32
    started = time.perf_counter()
    config, model, _ = build(size, "meta", dtype)
    params = sum(p.numel() for p in model.parameters())
    del model
    fft = time_steps("fft", size, device, dtype)
    mft = time_steps("mft", size, device, dtype)
    # CPU vs GPU masks: on a CPU-only machine both sides are the CPU (the check still runs end to end).
    equal = masks_equal_cpu_gpu(mft.pop("scores"), device)
    land = landscape_vs_eval(size, device, dtype)
    gpu_name = torch.cuda.get_device_name(0) if cuda else None
    result = {
        "mode": "gpu" if cuda else "cpu fallback",
        "device": gpu_name or "cpu",
        "machine": machine(),
        "revision": git_revision(),
        "model": {
            "params": params,
            **{k: size[k] for k in ("hidden", "layers", "inter", "vocab", "batch", "seq")},
            "dtype": str(dtype).replace("torch.", ""),
        },
        "fft": fft,
        "mft": mft,
        "mft_over_fft_step": mft["step_s"] / fft["step_s"],
        "masks_cpu_gpu": equal,
        "landscape": land,
        "point_over_eval": land["point_wall_s"] / land["eval_pass_s"],
    }
    if cuda:
        plan = plan_estimates(config, size, gpu_name)
        result["plan"] = plan
        result["plan_rel_error"] = {
            m: {"memory": _rel(r["peak_bytes"], plan[k]["memory_bytes"]), "step": _rel(r["step_s"], plan[k]["step_s"])}
            for m, r, k in (("mft", mft, "mask"), ("fft", fft, "fft"))
        }
    deadline = started + BUDGET_S
    result["stage_7b"] = stage_7b(gpu_name, deadline) if cuda else {"pending": "pending: no GPU was available"}
    if cuda:
        result["stage_protocol"] = stage_protocol(gpu_name, started + PROTOCOL_BUDGET_S)
    else:  # the dry run needs no GPU (no weights at all)
        from gpu_check_protocol import dry_run

        result["stage_protocol"] = {"dry_run": dry_run(), "run": {"pending": "pending: no GPU was available"}}
    result["rows"] = table_rows(result)
    result["seconds"] = time.perf_counter() - started
    return result


def stage_7b(gpu_name: str, deadline: float | None = None) -> dict:
    from gpu_check_7b import SEVEN_B, run_7b

    try:
        return run_7b(SEVEN_B, "cuda", "h200" if "H200" in gpu_name.upper() else "h100", deadline=deadline)
    except Exception as error:  # noqa: BLE001 - recorded in the results; the earlier rows stand
        return {"pending": f"FAILED: {type(error).__name__}: {str(error)[:200]}"}


def stage_protocol(gpu_name: str, deadline: float | None = None) -> dict:
    from gpu_check_protocol import run_protocol_stage

    try:
        return run_protocol_stage("h200" if "H200" in gpu_name.upper() else "h100", deadline)
    except Exception as error:  # noqa: BLE001 - recorded in the results; the earlier rows stand
        return {"dry_run": None, "run": {"pending": f"FAILED: {type(error).__name__}: {str(error)[:200]}"}}


def _gib(b):
    return "n/a" if b is None else f"{b / 2**30:.2f}"


def _pct(x):
    return "n/a" if x is None else f"{x:+.0%}"


def table_rows(r: dict) -> list[dict]:
    """Every row of the check (this part's, then the 7B stage's), each marked measured or plan."""
    from gpu_check_7b import rows as rows_7b

    peaks = (r["mft"]["peak_bytes"], r["fft"]["peak_bytes"])
    masks = r["masks_cpu_gpu"]
    rows = [
        table_row(
            "MFT step / FFT step",
            MEASURED,
            f"{r['mft']['step_s']:.3f} s",
            f"{r['fft']['step_s']:.3f} s",
            f"{r['mft_over_fft_step']:.2f}x",
        ),
        table_row(
            "peak memory MFT / FFT (GiB)",
            MEASURED,
            _gib(peaks[0]),
            _gib(peaks[1]),
            f"{peaks[0] / peaks[1]:.2f}x" if peaks[0] else "n/a",
        ),
        table_row(
            "landscape point / eval pass",
            MEASURED,
            f"{r['landscape']['point_wall_s']:.3f} s",
            f"{r['landscape']['eval_pass_s']:.3f} s",
            f"{r['point_over_eval']:.2f}x",
        ),
        table_row(
            f"masks CPU vs {masks['device']} (same scores)",
            MEASURED,
            f"{'identical' if masks['equal'] else 'DIFFERENT'} in {masks['comparisons']} comparisons",
        ),
    ]
    if "plan" in r:
        for method, key in (("mft", "mask"), ("fft", "fft")):
            est = r["plan"][key]
            rel = r["plan_rel_error"][method]
            rows.append(
                table_row(
                    f"`mftlab plan` {method} memory (GiB)",
                    PLAN,
                    f"{_gib(est['memory_bytes'])} estimated",
                    f"{_gib(r[method]['peak_bytes'])} measured",
                    f"error {_pct(rel['memory'])}",
                )
            )
            if est["step_s"] is not None:
                rows.append(
                    table_row(
                        f"`mftlab plan` {method} step",
                        PLAN,
                        f"{est['step_s']:.3f} s estimated",
                        f"{r[method]['step_s']:.3f} s measured",
                        f"error {_pct(rel['step'])}",
                    )
                )
    from gpu_check_protocol import rows as rows_protocol

    return rows + rows_7b(r.get("stage_7b")) + rows_protocol(r.get("stage_protocol"))


def markdown_table(rows: list[dict]) -> list[str]:
    lines = ["| check | measured or plan | figure | baseline | ratio |", "|---|---|---|---|---|"]
    return lines + [f"| {x['check']} | {x['source']} | {x['figure']} | {x['baseline']} | {x['ratio']} |" for x in rows]


def section(r: dict) -> str:
    m = r["model"]
    head = [f"Command: `{COMMAND}`  ", f"Machine: {r['machine']}; revision {r['revision']}", ""]
    if r["mode"] != "gpu":
        head += [
            "**GPU rows pending: no GPU was available.** The numbers below are the script's CPU fallback "
            f"(a {m['params'] / 1e6:.1f}M-parameter model, a few steps) and only show that it runs end to end; "
            "rerun `bash bench/gpu_check.sh` on one H100 / H200 to fill in the GPU rows.",
            "",
        ]
    else:
        head += [
            f"GPU: **{r['device']}**. Llama-shaped model, {m['params'] / 1e6:.0f}M parameters "
            f"(hidden {m['hidden']}, {m['layers']} layers, intermediate {m['inter']}, vocab {m['vocab']}) in "
            f"{m['dtype']}, batch {m['batch']} x {m['seq']} tokens.",
            "",
        ]
    head += [
        '"measured": this run on this machine (pending until it has run on a GPU); "plan": `mftlab plan` '
        "arithmetic for the same config (no GPU involved).",
        "",
    ]
    tail = ["", f"Whole check: {r['seconds']:.0f} s. Raw numbers: `bench/gpu_results.json`."]
    return "\n".join(head + markdown_table(r.get("rows") or table_rows(r)) + tail)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="Use the CPU fallback even when CUDA is available.")
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "gpu_results.json"))
    parser.add_argument("--no-write", action="store_true", help="Do not touch BENCHMARKS.md.")
    args = parser.parse_args(argv)
    result = run(force_cpu=args.cpu)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if not args.no_write:
        write_section(TITLE, section(result))
    print(section(result))
    return result


if __name__ == "__main__":
    main()

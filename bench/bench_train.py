"""Training step time and peak memory: MFT vs full fine-tuning, and our estimator vs a full-sort reference.

One Llama-shaped model (hidden 512, intermediate 1408, 4 layers, `all-linear` targets: 12.8M
targeted weights) and one fixed batch (8 x 256 random tokens; 8 is the paper's batch size) for
every variant:

- `fft`: AdamW on every weight (the trainer's `--method fft` step);
- `mft`: the trainer's `--method mask` step: masked wrappers (mftlab.mft.ste), AdamW on the scores,
  then one exact top-k refresh of every mask per optimizer step (warm-started selection);
- `ref`: the reference code's estimator: on every forward pass each score tensor is fully sorted
  to build the mask, and `F.linear(x, W * mask)` keeps the full-size masked weight for backward.

Step times: the three variants in one process, steps interleaved (robust to load on a shared
machine), a few warm-up steps, then the median of the timed steps. Peak memory: each variant alone
in its own subprocess for two steps: on CUDA `torch.cuda.max_memory_allocated`; on CPU the growth
of the process's peak resident set (getrusage ru_maxrss) over its resident set after the model and
batch were built.

    .venv/bin/python bench/bench_train.py            # writes its section of BENCHMARKS.md
    .venv/bin/python bench/bench_train.py --no-write --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

VARIANTS = ("fft", "mft", "ref")
TITLE = "Training step time (MFT vs FFT, estimator vs full sort)"
COMMAND = ".venv/bin/python bench/bench_train.py"
HIDDEN, INTER, LAYERS, BATCH, SEQ = 512, 1408, 4, 8, 256


def build(device):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=HIDDEN,
        intermediate_size=INTER,
        num_hidden_layers=LAYERS,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=SEQ,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).to(device)
        ids = torch.randint(3, 100, (BATCH, SEQ), device=device)
    return model, ids


class _FullSortMask:
    """The reference estimator (edge-popup `GetSubnet`): sort every scores tensor on each forward."""

    @staticmethod
    def make(ratio):
        import torch

        class GetSubnet(torch.autograd.Function):
            @staticmethod
            def forward(ctx, scores):
                out = torch.empty_like(scores)
                _, idx = scores.flatten().sort()
                j = int(ratio * scores.numel())
                flat = out.flatten()
                flat[idx[:j]] = 0
                flat[idx[j:]] = 1
                return flat.view_as(scores)

            @staticmethod
            def backward(ctx, g):
                return g

        return GetSubnet


def attach_reference(model, ratio=0.1):
    import torch
    import torch.nn.functional as F
    from torch import nn

    from mftlab.mft.targeting import TargetSpec, resolve_targets

    get_subnet = _FullSortMask.make(ratio)

    class RefLinear(nn.Module):
        def __init__(self, base):
            super().__init__()
            self.base = base
            self.scores = nn.Parameter(torch.randn_like(base.weight) * 0.02)

        def forward(self, x):
            mask = get_subnet.apply(self.scores.abs())
            return F.linear(x, self.base.weight * mask, self.base.bias)  # W * mask stays alive for backward

    for p in model.parameters():
        p.requires_grad_(False)
    for t in resolve_targets(model, TargetSpec.parse("all-linear")):
        parent_name, _, child = t.module_name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, RefLinear(getattr(parent, child)))


def setup_variant(variant: str, device: str, bf16: bool):
    """(step function, info) for one variant on its own copy of the model and batch."""
    import torch
    import torch.nn.functional as F

    from mftlab.mft.masking import SelectionConfig, attach_masks, refresh_masks
    from mftlab.mft.targeting import TargetSpec, resolve_targets
    from mftlab.mft.warm_select import WarmSelector

    model, ids = build(device)
    targets = resolve_targets(model, TargetSpec.parse("all-linear"))
    layers, selection, warm = None, SelectionConfig(mask_ratio=0.1), WarmSelector()
    if variant == "mft":
        layers = attach_masks(model, targets, score_init="random", score_std=0.02, seed=0)
        refresh_masks(layers, selection, warm)
    elif variant == "ref":
        attach_reference(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5)
    model.train()

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            logits = model(input_ids=ids).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if layers is not None:
            refresh_masks(layers, selection, warm)  # once per optimizer step, as in the trainer
        if device == "cuda":
            torch.cuda.synchronize()

    info = {"variant": variant, "targeted": sum(t.numel for t in targets), "trainable": sum(p.numel() for p in params)}
    return step, info


def time_interleaved(device: str, steps: int, warmup: int, bf16: bool) -> dict:
    """Median step time of each variant, the variants' steps interleaved so load changes hit all alike."""
    variants = {v: setup_variant(v, device, bf16) for v in VARIANTS}
    times = {v: [] for v in VARIANTS}
    for i in range(warmup + steps):
        for v, (step, _) in variants.items():
            start = time.perf_counter()
            step()
            if i >= warmup:
                times[v].append(time.perf_counter() - start)
    return {v: dict(info, median_s=statistics.median(times[v]), times_s=times[v]) for v, (_, info) in variants.items()}


def peak_memory(variant: str, device: str, bf16: bool, steps: int = 2) -> dict:
    """Peak training memory of one variant (run alone in this process)."""
    import torch

    step, info = setup_variant(variant, device, bf16)
    base_rss = _rss_now_kb()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_gpu = torch.cuda.memory_allocated()
    for _ in range(steps):
        step()
    if device == "cuda":
        info["peak_mb"] = (torch.cuda.max_memory_allocated() - base_gpu) / 2**20
        info["memory_method"] = "torch.cuda.max_memory_allocated above the model and batch"
    else:
        info["peak_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024
        info["memory_method"] = (
            "peak RSS (getrusage ru_maxrss) of a process running only that variant, "
            "above its RSS after building the model and batch"
        )
    return info


def _rss_now_kb() -> int:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["fft", "mft", "ref"], help=argparse.SUPPRESS)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads on the CPU (default 1: on a shared machine a descheduled OpenMP thread "
        "stalls every parallel op, which penalises the variant with more small ops)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device == "cuda" and torch.cuda.is_bf16_supported()
    if args.variant:
        print(json.dumps(peak_memory(args.variant, device, bf16)))
        return

    results = {}
    for variant in VARIANTS:  # memory: one process per variant
        cmd = [sys.executable, __file__, "--variant", variant, "--device", device, "--threads", str(args.threads)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results[variant] = json.loads(out.strip().splitlines()[-1])
        print(results[variant], flush=True)
    timed = time_interleaved(device, args.steps, args.warmup, bf16)  # time: all in one process, interleaved
    for v in VARIANTS:
        results[v].update(median_s=timed[v]["median_s"], min_s=min(timed[v]["times_s"]), times_s=timed[v]["times_s"])
        print(v, [round(t, 3) for t in timed[v]["times_s"]], flush=True)
    body = report(results, device, bf16, args)
    print(body)
    if not args.no_write:
        from report import write_section

        write_section(TITLE, body)


def report(r: dict, device: str, bf16: bool, args) -> str:
    from report import git_revision, machine

    fft, mft, ref = r["fft"], r["mft"], r["ref"]
    rows = "\n".join(
        f"| {name} | {v['trainable'] / 1e6:.1f}M | {v['median_s'] * 1000:.0f} | {v['min_s'] * 1000:.0f} | {v['peak_mb']:.0f} |"
        for name, v in (("fft (all weights)", fft), ("mft (ours)", mft), ("reference: full sort per forward", ref))
    )
    flags = f" --steps {args.steps} --warmup {args.warmup} --threads {args.threads}" + (
        "" if device == "cuda" or not _has_cuda() else " --device cpu"
    )
    return f"""Command: `{COMMAND}{flags}`
Machine: {machine()}; device {device}, {"bf16 autocast" if bf16 else "fp32"}; git {git_revision()}; load average
{os.getloadavg()[0]:.1f} at the end (the machine is shared, so single steps vary; ratios of interleaved steps are the robust numbers)

Llama-shaped model, hidden {HIDDEN}, intermediate {INTER}, {LAYERS} layers, `all-linear` targets =
{mft["targeted"] / 1e6:.1f}M targeted weights, mask ratio 0.1 per tensor; one fixed batch of {BATCH} x {SEQ}
tokens for every variant; {args.warmup} warm-up steps, then the median of {args.steps} optimizer steps
(forward, backward, AdamW, and for MFT one mask refresh). Step times: the three variants live in one
process and their steps are interleaved, so a change in machine load affects all three alike.
Peak memory: {mft["memory_method"]}.

| variant | trainable | step ms (median) | step ms (best) | peak training memory MB |
|---|---|---|---|---|
{rows}

- MFT step / FFT step = **{mft["median_s"] / fft["median_s"]:.2f}** by medians, {mft["min_s"] / fft["min_s"]:.2f} by best steps, {_paired(mft, fft):.2f} as the median of the per-round ratios (goal at most 1.15)
- reference step / MFT step = **{ref["median_s"] / mft["median_s"]:.2f}x** by medians, {ref["min_s"] / mft["min_s"]:.2f}x by best steps, {_paired(ref, mft):.2f}x as the median of the per-round ratios (goal at least 1.5x)
- MFT peak memory / FFT peak memory = **{mft["peak_mb"] / max(fft["peak_mb"], 1e-9):.2f}**
"""


def _paired(a: dict, b: dict) -> float:
    return statistics.median(x / y for x, y in zip(a["times_s"], b["times_s"]))


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()

"""GPU check, 7B stage (issue 10 G): LLaMA-2-7B's full shapes on one H100 / H200, within the check's 13 minutes.

Built directly on the GPU in bf16 with random weights (no download), 32 layers:
- MFT on layers 4-7 (fp32 scores, the trainer's wrappers, AdamW, one exact top-k refresh per
  step): median step time and peak memory, without and with gradient checkpointing (transformers'
  non-reentrant checkpointing, as `mftlab train --gradient-checkpointing`), each beside
  `mftlab plan` for the same config;
- one landscape point on a models plane through the model and two perturbed copies (B, C given
  as loaders, as `mftlab landscape --plane models` loads them): seconds per point against one plain
  eval pass over the same tokens, and peak memory against `mftlab plan --task landscape --plane models`;
- a 1-process `mftlab train --sharding fsdp` smoke run (torchrun, tiny-llama, 3 steps), skipped
  ("pending") while TrainConfig has no `sharding` field;
- then the model is saved and freed, and the real commands run on the copy (bench/gpu_check_7b_commands.py:
  FSDP FFT at `--grad-accum 4`, `mftlab eval`, `baseline --kind wanda / snip` with `--device`, a 2x2
  models-plane `mftlab landscape`), until the check's deadline.
`run_7b(size, device)` runs the same code on any size (the tests use a tiny one on the CPU, with the
commands started in-process: `launch=in_process`).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import os
import statistics
import tempfile
import time

SEVEN_B = dict(
    hidden=4096,
    inter=11008,
    layers=32,
    heads=32,
    kv=32,
    vocab=32000,
    batch=2,
    seq=1024,
    mft_layers="4-7",
    steps=4,
    warmup=2,
    eval_tokens=4096,
    landscape_batch=4,
    # the command rows (bench/gpu_check_7b_commands.py)
    cmd_examples=16,  # records of `seq` tokens: 16,384 tokens for eval, wanda, snip and the landscape
    cmd_batch=4,
    answer=64,  # answer tokens per record (the loss of eval, SNIP and the landscape)
    fsdp_layers=8,  # FSDP FFT on 8 of the 32 layers: all 32 need 122 GiB by `mftlab plan` on one GPU
    fsdp_batch=8,
    grad_accum=4,
    fsdp_steps=3,
)
PENDING_FSDP = "pending: --sharding fsdp not available"

from gpu_check import MEASURED, PLAN, _peak, _sync, table_row, timed_steps  # noqa: E402 - the check's own helpers
from gpu_check import _peak_reset as _reset  # noqa: E402


def llama_config(size: dict):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=size["vocab"],
        hidden_size=size["hidden"],
        intermediate_size=size["inter"],
        num_hidden_layers=size["layers"],
        num_attention_heads=size["heads"],
        num_key_value_heads=size["kv"],
        max_position_embeddings=max(4096, size["seq"]),
        pad_token_id=0,
        torch_dtype="bfloat16",
    )


def build(size: dict, device: str, seed: int = 0):
    """The model in bf16, initialised on `device` in bf16 (no fp32 copy, no host round trip)."""
    import torch
    from transformers import LlamaForCausalLM

    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.device(device):
                model = LlamaForCausalLM(llama_config(size))
    finally:
        torch.set_default_dtype(previous)
    model.config._attn_implementation = "sdpa"
    return model


def perturbed(model, scale: float, seed: int):
    """A copy of `model` plus seeded noise (another fine-tune, as far as memory and time go)."""
    import torch

    other = copy.deepcopy(model)
    g = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(torch.randn(p.shape, generator=g, device=p.device, dtype=p.dtype).mul_(scale))
    return other


def _plan(size: dict, gpu: str, **kwargs) -> dict:
    from mftlab.plan.planner import PlanConfig, make_plan

    with tempfile.TemporaryDirectory() as folder:
        llama_config(size).save_pretrained(folder)
        p = make_plan(PlanConfig(model=folder, dtype="bfloat16", precision="bf16", gpu=gpu, **kwargs))
    return {"memory_bytes": p.memory_per_gpu, "step_s": p.step_seconds, "total_s": p.total_seconds}


def mft_steps(model, size: dict, device: str, checkpointing: bool) -> dict:
    """Median seconds of an MFT step on layers `mft_layers` (and peak memory), masks detached after."""
    import torch
    import torch.nn.functional as F

    from mftlab.mft.masking import SelectionConfig, attach_masks, detach_masks, refresh_masks
    from mftlab.mft.targeting import TargetSpec, resolve_targets
    from mftlab.mft.warm_select import WarmSelector

    model.requires_grad_(False)
    if checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers' new name, as the trainer calls it
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _reset(device)
    layers = attach_masks(
        model,
        resolve_targets(model, TargetSpec.parse("all-linear", size["mft_layers"])),
        score_init="random",
        score_std=0.02,
        score_dtype="fp32",
        seed=0,
    )
    selection, warm = SelectionConfig(mask_ratio=0.1), WarmSelector()
    refresh_masks(layers, selection, warm)
    scores = [layer.mask_scores for layer in layers.values()]
    optimizer = torch.optim.AdamW(scores, lr=1e-5)
    ids = torch.randint(3, size["vocab"], (size["batch"], size["seq"]), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    model.train()

    def step():
        logits = model(input_ids=ids).logits  # (B, T, V)
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        del logits
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        refresh_masks(layers, selection, warm)
        return float(loss.detach())

    times = timed_steps(step, size, device)
    result = {
        "step_s": statistics.median(times),
        "peak_bytes": _peak(device),
        "scores": sum(s.numel() for s in scores),
        "gradient_checkpointing": checkpointing,
    }
    optimizer = scores = None  # free the optimizer state before the next stage (step() holds it)
    detach_masks(model)
    if checkpointing:
        (getattr(model, "activation_checkpointing_disable", None) or model.gradient_checkpointing_disable)()
    model.eval()
    return result


def models_plane_point(model, size: dict, device: str) -> dict:
    """Seconds per point of a models plane (1 x 2 grid + the 3 models) against one eval pass; peak memory."""
    import torch

    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
    from mftlab.training.data import Example
    from mftlab.training.evaluation import loss_sums

    gen = torch.Generator().manual_seed(1)

    def subset():
        n = max(1, size["eval_tokens"] // size["seq"])
        out = []
        for _ in range(n):
            ids = torch.randint(3, size["vocab"], (size["seq"],), generator=gen).tolist()
            out.append(Example(ids, list(ids), [ids[0]]))
        return prepare_data(out, 0, size["landscape_batch"], size["eval_tokens"], device)

    train, test = subset(), subset()
    with torch.no_grad():
        loss_sums(model, train.batches)  # warm-up
        _reset(device)
        times = []
        for _ in range(3):
            _sync(device)
            started = time.perf_counter()
            loss_sums(model, train.batches)
            loss_sums(model, test.batches)
            _sync(device)
            times.append(time.perf_counter() - started)
    eval_peak = _peak(device)
    _reset(device)
    with tempfile.TemporaryDirectory() as folder:
        config = LandscapeConfig("models", (1, 2))
        started = time.perf_counter()
        loss_landscape(
            [model, lambda: perturbed(model, 1e-3, 1), lambda: perturbed(model, 2e-3, 2)],
            train,
            test,
            config,
            os.path.join(folder, "ls"),
        )
        _sync(device)
        wall = time.perf_counter() - started
        with open(os.path.join(folder, "ls", "landscape.points-0.jsonl")) as f:
            inner = statistics.median(json.loads(line)["seconds"] for line in f)
    return {
        "eval_pass_s": statistics.median(times),
        "point_inner_s": inner,
        "wall_s": wall,
        "points": 5,
        "peak_bytes": _peak(device),
        "eval_peak_bytes": eval_peak,
        "label_tokens": train.tokens + test.tokens,
        "point_over_eval": inner / statistics.median(times),
    }


def fsdp_smoke(device: str, launch=None, deadline: float | None = None) -> dict:
    """`torchrun --nproc_per_node 1 mftlab train --sharding fsdp` on tiny-llama for 3 steps."""
    from gpu_check_7b_commands import in_subprocess, run_command

    from mftlab.training.config import TrainConfig

    if "sharding" not in {f.name for f in dataclasses.fields(TrainConfig)}:
        return {"status": PENDING_FSDP}
    with tempfile.TemporaryDirectory() as folder:
        data = os.path.join(folder, "d.jsonl")
        with open(data, "w") as f:
            f.writelines(json.dumps({"prompt": f"{i}+1=", "completion": str(i + 1)}) + "\n" for i in range(16))
        args = ["train", "tiny-llama", "--data", data, "--out", os.path.join(folder, "out"), "--method", "fft"]
        args += ["--sharding", "fsdp", "--max-steps", "3", "--batch-size", "4", "--device", device]
        done = run_command(launch or in_subprocess, args, deadline, torchrun=True)
        status = done.status
        if done.ok and not os.path.isdir(os.path.join(folder, "out", "model")):
            status = "FAILED: no model folder was written"
        return {"status": status, "seconds": done.seconds, "device": device}


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()  # the commands run in other processes: give them the memory


def run_7b(size: dict, device: str, gpu: str = "h100", launch=None, deadline: float | None = None) -> dict:
    """Every 7B row; plan comparisons where a peak was measured (CUDA). `launch` starts the commands
    (default: a fresh process each); `deadline` (time.perf_counter) bounds when they may run."""
    import gpu_check_7b_commands as commands

    started = time.perf_counter()
    model = build(size, device)
    params = sum(p.numel() for p in model.parameters())
    out = {
        "model": {
            "params": params,
            **{k: size[k] for k in ("hidden", "layers", "inter", "vocab", "batch", "seq")},
            "mft_layers": size["mft_layers"],
            "dtype": "bfloat16",
        }
    }
    for key, ckpt in (("mft", False), ("mft_checkpointing", True)):
        out[key] = mft_steps(model, size, device, ckpt)
        out[key]["plan"] = _plan(
            size,
            gpu,
            method="mask",
            layers=size["mft_layers"],
            batch_size=size["batch"],
            seq_len=size["seq"],
            gradient_checkpointing=ckpt,
            eval_batch_size=0,  # no evaluation between the steps, as mft_steps runs them
        )
    out["models_plane"] = models_plane_point(model, size, device)
    out["models_plane"]["plan"] = _plan(
        size,
        gpu,
        task="landscape",
        plane="models",
        grid="1x2",
        batch_size=size["landscape_batch"],
        seq_len=size["seq"],
        landscape_tokens=size["eval_tokens"],
    )
    launch = launch or commands.in_subprocess
    with tempfile.TemporaryDirectory() as folder:
        try:
            prepared = commands.prepare(model, size, device, folder)
        except Exception as error:  # noqa: BLE001 - the rows above stand; the command rows say why
            prepared, out["commands"] = None, {"pending": commands.failed(error)}
        del model
        _free(device)
        out["fsdp_smoke"] = fsdp_smoke(device, launch, deadline)
        if prepared is not None:
            try:
                out["fft_params"] = commands.save_fft_model(prepared, size, device)
                _free(device)
                out["commands"] = commands.run_commands(prepared, size, device, gpu, launch, deadline)
            except Exception as error:  # noqa: BLE001 - as above
                out["commands"] = {"pending": commands.failed(error)}
    out["seconds"] = time.perf_counter() - started
    return out


def _gib(b) -> str:
    return "n/a" if b is None else f"{b / 2**30:.1f}"


def rows(r: dict | None) -> list[dict]:
    """Rows of the 7B stage for the GPU check's table (pending when it did not run), each measured or plan."""
    import gpu_check_7b_commands as commands

    if not r or "pending" in r:
        why = (r or {}).get("pending", "pending: no GPU was available")
        pending = [
            "7B: MFT layers 4-7 step, peak memory vs plan",
            "7B: same with gradient checkpointing",
            "7B: models-plane point / eval pass, peak memory vs plan",
            "7B: `train --sharding fsdp` smoke (1 process)",
        ]
        return [table_row(check, MEASURED, why) for check in pending] + commands.rows(None, why)
    lines = []
    for key, label in (
        ("mft", "7B: MFT layers 4-7 step"),
        ("mft_checkpointing", "7B: MFT layers 4-7 step, checkpointing"),
    ):
        m = r[key]
        check = f"{label} ({r['model']['batch']} x {r['model']['seq']})"
        lines.append(table_row(check, MEASURED, f"{m['step_s']:.3f} s, {_gib(m['peak_bytes'])} GiB"))
        lines.append(
            table_row(
                f"{check}: `mftlab plan`",
                PLAN,
                f"{m['plan']['step_s']:.3f} s, {_gib(m['plan']['memory_bytes'])} GiB",
                f"measured {m['step_s']:.3f} s, {_gib(m['peak_bytes'])} GiB",
                f"memory {_ratio(m['peak_bytes'], m['plan']['memory_bytes'])}",
            )
        )
    p = r["models_plane"]
    lines.append(
        table_row(
            "7B: models-plane point / eval pass",
            MEASURED,
            f"{p['point_inner_s']:.3f} s / {p['eval_pass_s']:.3f} s",
            f"{p['label_tokens']} label tokens",
            f"{p['point_over_eval']:.2f}x",
        )
    )
    lines.append(
        table_row(
            "7B: models-plane peak memory",
            MEASURED,
            f"{_gib(p['peak_bytes'])} GiB (eval alone {_gib(p['eval_peak_bytes'])})",
        )
    )
    lines.append(
        table_row(
            "7B: models-plane peak memory: `mftlab plan`",
            PLAN,
            f"{_gib(p['plan']['memory_bytes'])} GiB",
            f"measured {_gib(p['peak_bytes'])} GiB",
            _ratio(p["peak_bytes"], p["plan"]["memory_bytes"]),
        )
    )
    lines.append(table_row("7B: `train --sharding fsdp` smoke (1 process)", MEASURED, r["fsdp_smoke"]["status"]))
    return lines + commands.rows(r.get("commands"))


def _ratio(measured, estimate) -> str:
    return "n/a" if not measured else f"plan / measured {estimate / measured:.2f}"

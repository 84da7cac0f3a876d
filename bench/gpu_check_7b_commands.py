"""GPU check, 7B stage, the command rows: `mftlab` itself on model folders that the check saves.

After the in-process rows (bench/gpu_check_7b.py) the 7B model (LLaMA-2-7B's full shapes, random bf16
weights) is saved with the character tokenizer beside `cmd_examples` records of exactly `seq` tokens,
one plain eval pass over them is timed here, the model is freed, and the commands run on the copy,
each in a fresh process:
- FSDP FFT: `torchrun --nproc_per_node 1 -m mftlab.cli.main train --sharding fsdp --method fft
  --grad-accum 4 --dtype bfloat16` (world 1: NCCL on a GPU, gloo on the CPU), `fsdp_steps` steps,
  no checkpoints, on a folder with the first `fsdp_layers` of the 32 decoder layers at 7B shapes:
  all 32 need 122 GiB by `mftlab plan` (16 B per trainable parameter on one process), more than an
  H100 holds. `peak_mem_gib` / `peak_reserved_gib` of the run's metrics.jsonl and the step time
  (from its tokens_per_s, steps 2 on) beside `mftlab plan` for the same config;
- start-up + load: `mftlab baseline --kind magnitude --dry-run` (loads the model, lists the targets);
- `mftlab eval --no-generate`, `mftlab baseline --kind wanda` and `--kind snip` (layers `mft_layers`,
  as the README's recipe, calibrated on every token of the data), all with `--device DEVICE`: the
  command's wall time against the plain eval pass over the same tokens (`evaluate`, the function
  `mftlab eval` calls, in this process), net of start-up + load; eval's peak beside
  `mftlab plan --task eval`;
- `mftlab landscape --plane models --grid 2x2` through the model and the model with the wanda and
  the snip mask applied (FOLDER::MASK, as the README draws FFT, continued FFT and MFT): seconds per
  point against the plain passes over the same train + test tokens, peak beside `mftlab plan`.
A command that would start after the check's deadline is "skipped"; one still running at it is
stopped (with every process it started) and marked "timed out".

`launch` starts the commands: `in_subprocess` (the GPU check) or `in_process` (the CPU tests: the same
arguments and the same reading of the outputs, without a new interpreter per command).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import string
import subprocess
import sys
import time
from dataclasses import dataclass

from gpu_check import MEASURED, PLAN, _sync, table_row
from gpu_check_7b import SEVEN_B, _gib, _plan, _ratio, build

MIN_LEFT_S = 30  # a command starts only with this much of the check's time left (a 7B load takes ~20 s)
PENDING_ROWS = (
    f"7B shapes: FSDP FFT, 1 process, `--grad-accum {SEVEN_B['grad_accum']}`, "
    f"{SEVEN_B['fsdp_layers']} of {SEVEN_B['layers']} layers",
    "7B: start-up + load (`mftlab baseline --dry-run`)",
    "7B: `mftlab eval --device cuda` / plain eval pass",
    "7B: `mftlab baseline --kind wanda --device cuda` / plain eval pass",
    "7B: `mftlab baseline --kind snip --device cuda` / plain eval pass",
    "7B: `mftlab landscape --plane models --grid 2x2`, point / eval passes",
)


# -- launching a command ------------------------------------------------------------------------
@dataclass
class Finished:
    """How a command ended: status "ok", "FAILED (exit N): ...", "timed out after N s" or "skipped: ..."."""

    status: str
    seconds: float | None = None
    stdout: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _tail(text: str) -> str:
    return " ".join((text or "").strip().splitlines()[-3:])[-300:]


def in_subprocess(args: list[str], torchrun: bool = False, timeout: float | None = None) -> Finished:
    """`python -m mftlab.cli.main ARGS` (under `torchrun --standalone --nproc_per_node 1` when asked),
    timed wall-clock; past `timeout` its whole process group (torchrun's worker too) is killed."""
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"] if torchrun else []
    cmd = (head or [sys.executable]) + ["-m", "mftlab.cli.main", *map(str, args)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the launcher and its workers, nothing else
        except ProcessLookupError:
            pass  # it ended as the time ran out
        proc.communicate()
        return Finished(f"timed out after {timeout:.0f} s", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        return Finished(f"FAILED (exit {proc.returncode}): {_tail(stderr)}", seconds, stdout)
    return Finished("ok", seconds, stdout)


def in_process(args: list[str], torchrun: bool = False, timeout: float | None = None) -> Finished:
    """The same command in this process (click's runner): how the CPU tests run it. A 1-process
    `train --sharding fsdp` starts its own process group here, as it does under torchrun."""
    from click.testing import CliRunner

    from mftlab.cli.main import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, [str(a) for a in args])
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        why = result.stderr or result.stdout or repr(result.exception)
        return Finished(f"FAILED (exit {result.exit_code}): {_tail(why)}", seconds, result.stdout)
    return Finished("ok", seconds, result.stdout)


def run_command(launch, args: list[str], deadline: float | None, torchrun: bool = False) -> Finished:
    """`launch` the command unless the deadline (time.perf_counter) is too close; it may run until then."""
    left = None if deadline is None else deadline - time.perf_counter()
    if left is not None and left < MIN_LEFT_S:
        return Finished("skipped: the check's 13-minute budget was spent before it could start")
    return launch(args, torchrun=torchrun, timeout=left)


def _allocated_gib(device: str) -> float | None:
    import torch

    return torch.cuda.memory_allocated() / 2**30 if device == "cuda" else None


def _json_out(finished: Finished) -> dict:
    """The JSON document a `--json` command printed (anything printed before it is ignored)."""
    text = finished.stdout
    return json.JSONDecoder().raw_decode(text[text.index("{") :])[0]


# -- what the commands read -----------------------------------------------------------------------
def write_data(path: str, size: dict) -> str:
    """`cmd_examples` records of exactly `seq` character tokens: a prompt, `answer` answer characters and the
    end token (so `answer` + 1 label tokens each)."""
    rng = random.Random(0)
    letters = string.ascii_lowercase
    with open(path, "w") as f:
        for _ in range(size["cmd_examples"]):
            prompt = "".join(rng.choice(letters) for _ in range(size["seq"] - size["answer"] - 1))
            answer = "".join(rng.choice(letters) for _ in range(size["answer"]))
            f.write(json.dumps({"prompt": prompt, "completion": answer}) + "\n")
    return path


def _save(model, folder: str) -> None:
    from mftlab.models.tokenizer import build_char_tokenizer

    model.save_pretrained(folder)
    build_char_tokenizer().save_pretrained(folder)


def prepare(model, size: dict, device: str, folder: str) -> dict:
    """Write the data and the model folder under `folder`; time one plain eval pass over the data here.

    The caller frees `model` afterwards; `fft_folder` is written by `save_fft_model` once it has.
    """
    import torch

    from mftlab.models.tokenizer import build_char_tokenizer
    from mftlab.training.data import label_tokens, load_examples
    from mftlab.training.evaluation import evaluate

    data = write_data(os.path.join(folder, "data.jsonl"), size)
    examples, _ = load_examples(data, build_char_tokenizer(), size["seq"])  # what the commands will read
    started = time.perf_counter()
    _save(model, os.path.join(folder, "model"))
    save_s = time.perf_counter() - started
    times, loss, tokenizer = [], None, build_char_tokenizer()
    with torch.no_grad():
        for _ in range(4):  # a warm-up, then the median of three
            _sync(device)
            started = time.perf_counter()
            loss = evaluate(model, tokenizer, examples, size["cmd_batch"], generate=False, device=device)
            _sync(device)
            times.append(time.perf_counter() - started)
    return {
        "root": folder,
        "folder": os.path.join(folder, "model"),
        "fft_folder": os.path.join(folder, "model-fft"),
        "data": data,
        "tokens": sum(len(e.input_ids) for e in examples),
        "label_tokens": sum(label_tokens(e) for e in examples),
        "save_s": save_s,
        "eval_pass_s": statistics.median(times[1:]),
        "eval_loss": loss.loss,
    }


def save_fft_model(prepared: dict, size: dict, device: str) -> int:
    """The FSDP FFT row's folder: 7B shapes, the first `fsdp_layers` decoder layers; returns its parameters."""
    model = build(dict(size, layers=size["fsdp_layers"]), device)
    params = sum(p.numel() for p in model.parameters())
    _save(model, prepared["fft_folder"])
    return params


# -- the rows -------------------------------------------------------------------------------------
def fft_fsdp(p: dict, size: dict, device: str, gpu: str, launch, deadline) -> dict:
    """FSDP FFT through `mftlab train` under torchrun (1 process); peaks from its metrics.jsonl."""
    from mftlab.plan.terms import GPUS

    out = os.path.join(p["root"], "fft-run")
    args = ["train", p["fft_folder"], "--data", p["data"], "--out", out, "--method", "fft", "--sharding", "fsdp"]
    args += ["--grad-accum", size["grad_accum"], "--batch-size", size["fsdp_batch"], "--max-steps", size["fsdp_steps"]]
    args += ["--log-every", 1, "--max-seq-len", size["seq"], "--lr", "1e-5", "--dtype", "bfloat16", "--device", device]
    done = run_command(launch, args, deadline, torchrun=True)
    result = {"status": done.status, "wall_s": done.seconds, "layers": size["fsdp_layers"], "of": size["layers"]}
    result["grad_accum"] = size["grad_accum"]
    same = dict(method="fft", sharding="fsdp", gpus=1, batch_size=size["fsdp_batch"], eval_batch_size=0)
    same.update(grad_accum=size["grad_accum"], seq_len=size["seq"])
    result["plan"] = _plan(dict(size, layers=size["fsdp_layers"]), gpu, **same)
    result["plan_all_layers"] = _plan(size, gpu, **same)  # why the row uses fewer layers
    result.update(gpu=GPUS[gpu].name, gpu_gib=GPUS[gpu].memory / 2**30)
    result["too_big"] = result["plan_all_layers"]["memory_bytes"] > GPUS[gpu].memory
    if done.ok:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        warm = [r for r in rows if r.get("step", 0) >= 2] or rows  # AdamW's states exist from step 2 on
        result.update(
            steps=rows[-1]["step"],
            step_s=statistics.median(size["fsdp_batch"] * size["seq"] / r["tokens_per_s"] for r in warm),
            peak_mem_gib=max(r["peak_mem_gib"] for r in rows),
            peak_mem_gib_by_rank=rows[-1]["peak_mem_gib_by_rank"],
            peak_reserved_gib=max((r["peak_reserved_gib"] for r in rows if "peak_reserved_gib" in r), default=None),
        )
    shutil.rmtree(out, ignore_errors=True)  # the gathered model: GiBs of disk the later rows may need
    return result


def _timed(name: str, args: list[str], p: dict, launch, deadline, load_s: float | None) -> dict:
    """A `--json` command's wall time, net of start-up + load, against the plain eval pass; its peaks."""
    done = run_command(launch, args, deadline)
    result = {"status": done.status, "wall_s": done.seconds, "eval_pass_s": p["eval_pass_s"], "tokens": p["tokens"]}
    if done.ok:
        out = _json_out(done)
        result.update({k: out.get(k) for k in ("peak_mem_gib", "peak_reserved_gib")})
        if name == "eval":
            result.update(loss=out["loss"], loss_here=p["eval_loss"])
        if load_s is not None:
            result["net_s"] = done.seconds - load_s
            result["net_over_eval"] = result["net_s"] / p["eval_pass_s"]
    return result


def landscape_2x2(p: dict, size: dict, device: str, gpu: str, launch, deadline, masks: list[str]) -> dict:
    """`mftlab landscape --plane models --grid 2x2` through the model, model::wanda and model::snip."""
    from mftlab.files.results import read_result

    if len(masks) < 2:
        return {"status": "not run: it needs the wanda and the snip mask, and a row before it failed"}
    out = os.path.join(p["root"], "landscape")
    models = [p["folder"]] + [f"{p['folder']}::{m}" for m in masks]
    args = ["landscape", "--plane", "models", "--grid", "2x2", "--labels", "model,wanda,snip", "--no-figures"]
    args += [x for m in models for x in ("--model", m)]
    args += ["--data", p["data"], "--eval-data", p["data"], "--max-tokens", p["label_tokens"]]
    args += ["--max-seq-len", size["seq"], "--batch-size", size["cmd_batch"], "--out", out]
    args += ["--dtype", "bfloat16", "--device", device]
    done = run_command(launch, args, deadline)
    result = {"status": done.status, "wall_s": done.seconds, "eval_passes_s": 2 * p["eval_pass_s"]}
    result["plan"] = _plan(
        size,
        gpu,
        task="landscape",
        plane="models",
        grid="2x2",
        batch_size=size["cmd_batch"],
        seq_len=size["seq"],
        landscape_tokens=p["label_tokens"],
    )
    if done.ok:
        info = read_result(out, "landscape")
        seconds = []
        for name in sorted(os.listdir(out)):
            if name.startswith("landscape.points-") and name.endswith(".jsonl"):
                with open(os.path.join(out, name)) as f:
                    seconds += [json.loads(line)["seconds"] for line in f if line.strip()]
        result.update(
            points=len(seconds),
            point_s=statistics.median(seconds),
            point_over_eval=statistics.median(seconds) / result["eval_passes_s"],
            peak_mem_gib=info.get("peak_mem_gib"),
            peak_reserved_gib=info.get("peak_reserved_gib"),
        )
    return result


def failed(error: Exception) -> str:
    return f"FAILED: {type(error).__name__}: {str(error)[:200]}"


def _guarded(row, *args) -> dict:
    """One row; an error reading its outputs fails that row alone (the others, and the rows above, stand)."""
    try:
        return row(*args)
    except Exception as error:  # noqa: BLE001 - recorded in the row
        return {"status": failed(error)}


def run_commands(p: dict, size: dict, device: str, gpu: str, launch=in_subprocess, deadline=None) -> dict:
    """Every command row, in order (FFT, load, eval, wanda, snip, landscape), on `prepare`'s folders."""
    model = ["--dtype", "bfloat16", "--device", device]
    out = {"device": device, "tokens": p["tokens"], "label_tokens": p["label_tokens"], "save_s": p["save_s"]}
    out["fsdp"] = {"layers": size["fsdp_layers"], "of": size["layers"], "grad_accum": size["grad_accum"]}
    out["parent_allocated_gib"] = _allocated_gib(device)  # ~0 once the in-process model is freed
    out["eval_pass_s"] = p["eval_pass_s"]
    out["fft_fsdp"] = _guarded(fft_fsdp, p, size, device, gpu, launch, deadline)
    load = run_command(launch, ["baseline", p["folder"], "--kind", "magnitude", "--dry-run", *model], deadline)
    out["load"] = {"status": load.status, "wall_s": load.seconds}
    load_s = load.seconds if load.ok else None
    seq = ["--max-seq-len", size["seq"], "--batch-size", size["cmd_batch"]]
    eval_args = ["eval", p["folder"], "--data", p["data"], "--no-generate", "--json", *seq, *model]
    out["eval"] = _guarded(_timed, "eval", eval_args, p, launch, deadline, load_s)
    out["eval"]["plan"] = _plan(size, gpu, task="eval", batch_size=size["cmd_batch"], seq_len=size["seq"])
    masks = []
    for kind in ("wanda", "snip"):
        path = os.path.join(p["root"], f"{kind}.safetensors")
        args = ["baseline", p["folder"], "--kind", kind, "--data", p["data"], "--max-tokens", p["tokens"], *seq]
        args += ["--layers", size["mft_layers"], "--out", path, "--json", *model]
        out[kind] = _guarded(_timed, kind, args, p, launch, deadline, load_s)
        if out[kind]["status"] == "ok":
            masks.append(path)
    out["landscape"] = _guarded(landscape_2x2, p, size, device, gpu, launch, deadline, masks)
    return out


# -- the table --------------------------------------------------------------------------------------
def _peak_text(r: dict) -> str:
    gib = r.get("peak_mem_gib")
    if gib is None:
        return "peak n/a"
    reserved = r.get("peak_reserved_gib")
    return f"peak {gib:.1f} GiB" + (f" (reserved {reserved:.1f})" if reserved is not None else "")


def _plan_row(check: str, plan: dict, gib: float | None, step: tuple | None = None) -> dict:
    """The plan beside the measurement: memory (and step time) by `mftlab plan`, then plan / measured."""
    figure = f"{_gib(plan['memory_bytes'])} GiB"
    measured = "measured " + ("n/a" if gib is None else f"{gib:.1f} GiB")
    ratio = _ratio(None if gib is None else gib * 2**30, plan["memory_bytes"])
    if step is not None and plan.get("step_s") is not None:
        figure += f", {plan['step_s']:.3f} s per step"
        measured += f", {step[0]:.3f} s" if step[0] else ""
        ratio += f"; time {plan['step_s'] / step[0]:.2f}" if step[0] else ""
    return table_row(check, PLAN, figure, measured, ratio)


def rows(r: dict | None, why: str = "pending: no GPU was available") -> list[dict]:
    """The command rows of the GPU check's table (each check pending when the stage did not run)."""
    if not r or "pending" in r:
        return [table_row(check, MEASURED, (r or {}).get("pending", why)) for check in PENDING_ROWS]
    lines = []
    f, shape = r["fft_fsdp"], r["fsdp"]
    fft = f"7B shapes: FSDP FFT, 1 process, `--grad-accum {shape['grad_accum']}`, "
    fft += f"{shape['layers']} of {shape['of']} layers"
    if "peak_mem_gib" in f:
        lines.append(
            table_row(
                fft, MEASURED, f"{f['step_s']:.3f} s per step, {_peak_text(f)}", f"{f['steps']} steps, no checkpoints"
            )
        )
        lines.append(_plan_row(fft + ": `mftlab plan`", f["plan"], f["peak_mem_gib"], (f["step_s"],)))
    else:
        lines.append(table_row(fft, MEASURED, f["status"]))
    if "plan_all_layers" in f:
        lines.append(
            table_row(
                f"7B: FSDP FFT, 1 process, all {shape['of']} layers: `mftlab plan`",
                PLAN,
                f"{_gib(f['plan_all_layers']['memory_bytes'])} GiB",
                f"not run: over the {f['gpu_gib']:.0f} GiB of one {f['gpu']}"
                if f["too_big"]
                else f"not run (the row above runs {shape['layers']} layers)",
            )
        )
    load = r["load"]
    lines.append(
        table_row(
            "7B: start-up + load (`mftlab baseline --dry-run`)",
            MEASURED,
            f"{load['wall_s']:.1f} s" if load["status"] == "ok" else load["status"],
            f"{r['save_s']:.1f} s to save the folder",
        )
    )
    for key, label in (
        ("eval", "mftlab eval"),
        ("wanda", "mftlab baseline --kind wanda"),
        ("snip", "mftlab baseline --kind snip"),
    ):
        c = r[key]
        check = f"7B: `{label} --device {r['device']}` / plain eval pass"
        if c["status"] != "ok":
            lines.append(table_row(check, MEASURED, c["status"]))
            continue
        net = f", {c['net_s']:.1f} s net of start-up + load" if "net_s" in c else ""
        lines.append(
            table_row(
                check,
                MEASURED,
                f"{c['wall_s']:.1f} s{net}; {_peak_text(c)}",
                f"{c['eval_pass_s']:.3f} s ({c['tokens']} tokens)",
                f"{c['net_over_eval']:.1f}x net" if "net_over_eval" in c else "n/a",
            )
        )
        if key == "eval" and "plan" in c:
            lines.append(_plan_row("7B: `mftlab eval`: `mftlab plan --task eval`", c["plan"], c.get("peak_mem_gib")))
    ls = r["landscape"]
    check = "7B: `mftlab landscape --plane models --grid 2x2`, point / eval passes"
    if ls["status"] != "ok":
        lines.append(table_row(check, MEASURED, ls["status"]))
    else:
        lines.append(
            table_row(
                check,
                MEASURED,
                f"{ls['point_s']:.3f} s per point ({ls['points']} points, {ls['wall_s']:.0f} s wall); {_peak_text(ls)}",
                f"{ls['eval_passes_s']:.3f} s (train + test)",
                f"{ls['point_over_eval']:.2f}x",
            )
        )
        lines.append(_plan_row("7B: models-plane landscape: `mftlab plan`", ls["plan"], ls.get("peak_mem_gib")))
    return lines

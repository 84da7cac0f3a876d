"""Benchmark: cost of one landscape grid point versus one plain evaluation pass, and versus `loss-landscapes`.

Writes (or replaces) the section `## Loss landscape` of BENCHMARKS.md; other sections are kept.

    .venv/bin/pip install -r bench/requirements.txt   # loss-landscapes, only for the comparison (make bench does it)
    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_landscape.py --grid 7 --tokens 1024 --threads 1

What is timed (same model, same tokens, same device):
- plain eval: `loss_sums` over the train and the test subset (one pass each), median of 3 just
  before and 3 just after each method (the host is shared, so each method gets its own baseline);
- mftlab: `loss_landscape()` on an NxN random plane (each point evaluates train and test), wall time
  / points, with directions regenerated per point (--regenerate-directions; the default above 134M
  perturbed weights) and cached (--cache-directions; the default below);
- loss-landscapes: `random_plane(..., steps=N, normalization="filter")` with a Metric that runs
  the same `loss_sums` over the same batches (it has no notion of train and test, so the metric
  evaluates both), wall time / points.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import tempfile
import time

import torch

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.landscape import LandscapeConfig, loss_landscape, prepare_data
from mftlab.models.loading import load_model
from mftlab.training.data import load_examples
from mftlab.training.evaluation import loss_sums

SECTION = "## Loss landscape"


def _write_data(folder: str, n: int, offset: int) -> str:
    path = os.path.join(folder, f"data{offset}.jsonl")
    with open(path, "w") as f:
        for i in range(n):
            f.write(
                json.dumps(
                    {
                        "prompt": f"Q: what is {i} times {offset + 3}?\nA: ",
                        "completion": f"{i} times {offset + 3} is {i * (offset + 3)}.",
                    }
                )
                + "\n"
            )
    return path


def _plain_eval(model, train, test, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        loss_sums(model, train.batches)
        loss_sums(model, test.batches)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _mftlab(model, train, test, steps: int, cache: bool, folder: str) -> tuple[float, float]:
    """(wall seconds per point, median in-loop seconds per point)."""
    config = LandscapeConfig("random", (steps, steps), None, DirectionSpec(seed=0), cache_directions=cache)
    out = os.path.join(folder, f"mftlab-{cache}")
    started = time.perf_counter()
    loss_landscape([model], train, test, config, out)
    wall = (time.perf_counter() - started) / steps**2
    with open(os.path.join(out, "landscape.points-0.jsonl")) as f:
        inner = statistics.median(json.loads(line)["seconds"] for line in f)
    return wall, inner


def _bracketed(run, model, train, test):
    """Run `run()` between two plain-eval timings (the machine is shared: compare like with like)."""
    before = _plain_eval(model, train, test, 3)
    value = run()
    after = _plain_eval(model, train, test, 3)
    return value, (before + after) / 2


def _loss_landscapes(model, train, test, steps: int) -> float | str:
    try:
        import loss_landscapes
        from loss_landscapes.metrics import Metric
    except ImportError:
        return "not installed (pip install loss-landscapes)"

    class TokenLoss(Metric):  # the shim: their Metric API around our one loss function
        def __call__(self, model_wrapper):
            module = model_wrapper.get_modules()[0]
            return loss_sums(module, train.batches).loss + loss_sums(module, test.batches).loss

    started = time.perf_counter()
    loss_landscapes.random_plane(
        model, TokenLoss(), distance=1, steps=steps, normalization="filter", deepcopy_model=True
    )
    return (time.perf_counter() - started) / steps**2


def _replace_section(path: str, body: str) -> None:
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{body.strip()}\n\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--grid", type=int, default=11, help="N for an NxN grid")
    parser.add_argument("--tokens", type=int, default=1024, help="label tokens per subset")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is steadiest on a shared host)")
    parser.add_argument("--out", default="BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    loaded = load_model(args.model, device=args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    with tempfile.TemporaryDirectory() as folder:
        sets = []
        for offset in (0, 1):
            examples, _ = load_examples(_write_data(folder, 400, offset), tokenizer, 256)
            sets.append(prepare_data(examples, tokenizer.pad_token_id, args.batch_size, args.tokens, args.device))
        train, test = sets
        _plain_eval(model, train, test, 2)  # warm-up
        (regen, regen_inner), plain_regen = _bracketed(
            lambda: _mftlab(model, train, test, args.grid, False, folder), model, train, test
        )
        (cached, cached_inner), plain_cached = _bracketed(
            lambda: _mftlab(model, train, test, args.grid, True, folder), model, train, test
        )
        theirs, plain_theirs = _bracketed(lambda: _loss_landscapes(model, train, test, args.grid), model, train, test)

    params = sum(p.numel() for p in model.parameters())
    device = (
        torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), shared host)"
    )
    command = f"HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_landscape.py --model {args.model} --grid {args.grid} --tokens {args.tokens} --batch-size {args.batch_size} --device {args.device} --threads {args.threads}"
    their_row = (
        f"| loss-landscapes {_version()} `random_plane` (filter) | {theirs:.4f} | | {plain_theirs:.4f} | "
        f"{theirs / plain_theirs:.2f} |"
        if isinstance(theirs, float)
        else f"| loss-landscapes | {theirs} | | | |"
    )
    side_by_side = (
        f"Side by side (wall time per point): mftlab / loss-landscapes = {regen / theirs:.2f} (directions "
        f"regenerated), {cached / theirs:.2f} (cached)."
        if isinstance(theirs, float)
        else ""
    )
    body = f"""
Command (one run): `{command}`

Model `{args.model}` ({params:,} parameters, fp32) on {device}; {args.grid}x{args.grid} random plane,
train {train.tokens} + test {test.tokens} label tokens per point (both losses at every point).
Each method runs between two timings of one plain eval pass over the same tokens (`loss_sums` on
train and test, median of 3 before and 3 after), and is compared with their mean.

| method | s / grid point (wall) | s / grid point (in loop, median) | plain eval pass, s | ratio (wall / plain) |
|---|---|---|---|---|
| mftlab `--regenerate-directions` (default above 134M perturbed weights) | {regen:.4f} | {regen_inner:.4f} | {plain_regen:.4f} | {regen / plain_regen:.2f} |
| mftlab `--cache-directions` (default at this size) | {cached:.4f} | {cached_inner:.4f} | {plain_cached:.4f} | {cached / plain_cached:.2f} |
{their_row}

{side_by_side}

Goal: at most 1.10 for mftlab. Per point mftlab sets theta0 + a d1 + b d2 in fp32 from the pristine
weights, evaluates, records the realised perturbation norm and appends the point with flush + fsync.
Regenerating the directions costs one `randn` + normalisation per tensor and axis per point; it is
negligible next to a forward pass only when the evaluation set is large compared with the model
(tokens per point >> 2 x parameters / FLOP rate); otherwise cache them (`--cache-directions`, the default up to 134M perturbed weights)
(2 extra float32 copies of the perturbed weights). loss-landscapes (installed only for this
comparison) draws uniform, not Gaussian, directions, evaluates one metric per point, and leaves
the model displaced unless it deep-copies it; its time includes its own direction set-up.
The host is shared with other jobs, so timings carry noise of roughly +-10% (a ratio below 1.00 is
that noise, not a speed-up).
"""
    _replace_section(args.out, body)
    print(body)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("loss-landscapes")
    except Exception:  # noqa: BLE001 - only for the label
        return ""


if __name__ == "__main__":
    main()

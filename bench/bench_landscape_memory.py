"""Benchmark: peak host memory of a landscape point on top of a plain evaluation, per plane.

Writes (or replaces) the section `## Landscape memory` of BENCHMARKS.md; other sections are kept.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_landscape_memory.py

Each case runs in a fresh subprocess (so `ru_maxrss` is that case's own peak): a bf16 Llama of
~106M parameters (hidden 768, 8 layers, intermediate 2048, vocab 32000) built from its config
with random weights (initialised directly in bf16, no fp32 detour), synthetic token data, then
- first, in every case, a plain eval: `loss_sums` over the train and test subsets (what `mftlab
  eval` does); its peak RSS is the baseline, read in the same process;
- random: then a 2x2 random-plane landscape with directions regenerated per point;
- models: a 2x2 plane through the model and two perturbed bf16 copies (given as loaders, the
  way `mftlab landscape --plane models --model A --model B --model C` loads them).
The figure is (peak RSS after the landscape - peak RSS after the eval) / model bytes. `--tag` names the code
version measured (the table keeps one row per tag, so "before" and "after" sit side by side).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SECTION = "## Landscape memory"
SHAPE = dict(hidden=768, layers=8, intermediate=2048, heads=12, vocab=32000)


def build(seed: int, shift: float = 0.0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=SHAPE["vocab"],
        hidden_size=SHAPE["hidden"],
        intermediate_size=SHAPE["intermediate"],
        num_hidden_layers=SHAPE["layers"],
        num_attention_heads=SHAPE["heads"],
        num_key_value_heads=SHAPE["heads"],
        max_position_embeddings=512,
    )
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)  # initialise in bf16: no transient fp32 model
    try:
        torch.manual_seed(0)
        model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    if shift:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g, dtype=torch.bfloat16).mul_(shift))
    return model


def data(seed: int, n: int = 16, length: int = 128):
    import torch

    from mftlab.analysis.landscape import prepare_data
    from mftlab.training.data import IGNORE_INDEX, Example

    g = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        ids = torch.randint(3, SHAPE["vocab"], (length,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (length // 2) + ids[length // 2 :]
        examples.append(Example(ids, labels, ids[: length // 2]))
    return prepare_data(examples, 0, batch_size=8)


def case(kind: str) -> dict:
    import torch

    torch.set_num_threads(1)
    from mftlab.analysis.directions import DirectionSpec
    from mftlab.analysis.landscape import LandscapeConfig, loss_landscape
    from mftlab.training.evaluation import loss_sums

    model = build(0)
    train, test = data(1), data(2)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    loss_sums(model, train.batches)  # the plain eval first, in the same process: its peak is the baseline
    loss_sums(model, test.batches)
    eval_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if kind != "eval":
        with tempfile.TemporaryDirectory() as out:
            if kind == "random":
                config = LandscapeConfig("random", (2, 2), None, DirectionSpec(seed=0), cache_directions=False)
                loss_landscape([model], train, test, config, out)
            else:
                config = LandscapeConfig("models", (2, 2))
                loss_landscape([model, lambda: build(1, 0.01), lambda: build(2, 0.02)], train, test, config, out)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {
        "kind": kind,
        "peak": peak,
        "eval_peak": eval_peak,
        "model_bytes": model_bytes,
        "params": sum(p.numel() for p in model.parameters()),
    }


def run_case(kind: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--case", kind], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _table(rows: dict) -> str:
    lines = [
        "| code | plane | peak RSS, GiB | eval peak RSS, GiB | extra / model bytes | goal |",
        "|---|---|---|---|---|---|",
    ]
    for tag, r in rows.items():
        for kind, goal in (("random", "<= 1.2"), ("models", "<= 3.2")):
            base = r.get(f"{kind}_eval", r.get("eval"))
            lines.append(
                f"| {tag} | {kind} | {r[kind] / 2**30:.3f} | {base / 2**30:.3f} | "
                f"{(r[kind] - base) / r['model_bytes']:.2f} | {goal} |"
            )
    return "\n".join(lines)


def write(rows: dict, params: int, path: str) -> None:
    body = f"""Command: `HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_landscape_memory.py --tag <code>` (each case
in its own subprocess, a plain eval pass first as the baseline in the same process; peak RSS from
`resource.getrusage(RUSAGE_SELF).ru_maxrss`).

Model: bf16 Llama built from config with random weights, {params:,} parameters (hidden 768, 8 layers,
intermediate 2048, vocab 32000; the embedding and head are 46% of it, so per-tensor transients weigh
more here than on LLaMA-2-7B, where the largest tensor is 2% of the model). Data: 16 + 16 synthetic
examples of 128 tokens, batch 8. Each case: a plain eval pass (`loss_sums` on both subsets), then a 2x2
random plane (directions regenerated per point) or a 2x2 plane through the model and two perturbed bf16
copies. "extra / model bytes" = (peak RSS after the landscape - peak RSS after the eval pass) / bytes of
one model.

<!-- rows: {json.dumps(rows)} -->
{_table(rows)}

"before" is the code of commit 4de7a78 (run with `PYTHONPATH=<export of 4de7a78>`), "after" this code, on
the same machine one after the other. The values are unchanged: tests/analysis/test_landscape_golden.py
compares every demo plane (random, random orthogonalised with 1-D parameters, models, line; fp32 and
bf16) with values the old code wrote (tests/data/landscape_golden.json): fp32 within 1e-7 relative,
bf16 within 1e-4.
"""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    block = f"{SECTION}\n\n{body.strip()}\n\n"
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    with open(path, "w") as f:
        f.write(text.rstrip() + "\n")


def _previous_rows(path: str) -> dict:
    if not os.path.exists(path):
        return {}
    m = re.search(r"<!-- rows: (\{.*?\}) -->", open(path).read())
    return json.loads(m.group(1)) if m else {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["eval", "random", "models"])
    parser.add_argument("--tag", default="after (per-tensor fp32 from model-dtype pristine weights)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(HERE), "BENCHMARKS.md"))
    args = parser.parse_args()
    if args.case:
        print(json.dumps(case(args.case)))
        return
    results = {kind: run_case(kind) for kind in ("random", "models")}
    row = {kind: results[kind]["peak"] for kind in results}
    row.update({f"{kind}_eval": results[kind]["eval_peak"] for kind in results})
    row["model_bytes"] = results["random"]["model_bytes"]
    rows = _previous_rows(args.out)
    rows[args.tag] = row
    write(rows, results["random"]["params"], args.out)
    print(_table(rows))


if __name__ == "__main__":
    main()

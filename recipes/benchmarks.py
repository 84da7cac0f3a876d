"""The protocol's benchmark columns: every method of a domain scored on that domain's lm-eval tasks.

A domain of the protocol config may name lm-evaluation-harness tasks (`tasks: [gsm8k]`, and
`num_fewshot`); the config's `evaluation` section says how they run (include_path, limit, batch_size,
chat template, ...). Each method's model (its mask applied in memory) is scored by `mftlab.harness`
and the result is cached in the domain's eval folder as `bench-NAME.json` (its task metrics,
few-shot counts and lm-eval's version), with lm-eval's per-document scores beside it in
`bench-NAME.examples.jsonl` (for `mftlab compare-evals`); the random mask's draws are averaged like
its other numbers.
"""

from __future__ import annotations

import dataclasses
import os
import statistics

from mftlab.files.results import read_json, write_json
from mftlab.harness.config import HarnessConfig


def harness_for(domain, evaluation) -> HarnessConfig | None:
    """The lm-eval run of `domain`'s tasks under the config's `evaluation` settings (None: no tasks)."""
    if not domain.tasks:
        return None
    return HarnessConfig(
        tasks=tuple(domain.tasks),
        num_fewshot=domain.num_fewshot,
        limit=evaluation.limit,
        batch_size=evaluation.batch_size,
        apply_chat_template=evaluation.apply_chat_template,
        fewshot_as_multiturn=evaluation.fewshot_as_multiturn,
        gen_kwargs=evaluation.gen_kwargs,
        include_path=evaluation.include_path,
        confirm_run_unsafe_code=evaluation.confirm_run_unsafe_code,
    )


def bench_path(folder: str, name: str) -> str:
    return os.path.join(folder, f"bench-{name}.json")


def metrics(results: dict) -> dict[str, dict[str, float]]:
    """task -> metric -> value (lm-eval's `metric,filter` keys; stderr and counts left out)."""
    return {
        task: {
            k: v
            for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "_stderr" not in k and k != "sample_len"
        }
        for task, values in results["results"].items()
    }


def score_job(
    folder: str, job, harness: HarnessConfig, *, device="cpu", dtype: str = "auto", launch=None
) -> dict | None:
    """`job`'s model on `harness`'s tasks, cached as bench-NAME.json (process 0 writes it)."""
    from mftlab.harness.run import per_example_rows, run_tasks
    from mftlab.significance.per_example import write_per_example

    path = bench_path(folder, job.name)
    if os.path.exists(path):
        return read_json(path)
    model, tokenizer = job.loader(device, dtype)()
    results = run_tasks(model, tokenizer, dataclasses.replace(harness, log_samples=True), launch)
    if results is None:  # another process of the launch: process 0 writes
        return None
    os.makedirs(folder, exist_ok=True)
    examples = f"bench-{job.name}.examples.jsonl"
    write_per_example(os.path.join(folder, examples), per_example_rows(results))  # before the JSON that marks it done
    entry = {
        "method": job.name,
        "tasks": list(harness.tasks),
        "metrics": metrics(results),
        "higher_is_better": results.get("higher_is_better", {}),
        "n-shot": results.get("n-shot", {}),
        "lm_eval_version": results.get("lm_eval_version"),
        "per_example": examples,
    }
    write_json(path, entry)
    return entry


def combine_draws(entries: list[dict]) -> dict:
    """The random mask's draws as one entry: every metric the mean over the draws."""
    first = entries[0]
    means = {
        task: {k: statistics.fmean(e["metrics"][task][k] for e in entries) for k in values}
        for task, values in first["metrics"].items()
    }
    return dict(first, method="random", metrics=means, draws=len(entries))

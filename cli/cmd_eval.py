"""`mftlab eval`: loss, perplexity, token accuracy and exact-match of a model, with or without a mask."""

from __future__ import annotations

import json

import click

from mftlab.cli.options import (
    device_option,
    force_option,
    model_options,
    option_for,
    options_for,
    seed_option,
)
from mftlab.harness.config import HarnessConfig
from mftlab.training.config import TrainConfig


@click.command("eval")
@click.argument("model")
@click.option("--mask", "mask_path", default=None, help="Apply this mask (mask.safetensors) before evaluating.")
@click.option(
    "--data", default=None, help="Data to evaluate on (.jsonl/.json/.parquet/.csv, folder or hub id); or --tasks."
)
@option_for(HarnessConfig, "tasks")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Examples per batch.")
@option_for(TrainConfig, "max_seq_len")
@click.option("--data-fraction", type=float, default=1.0, show_default=True, help="Evaluate on this seeded fraction.")
@click.option("--max-new-tokens", type=int, default=32, show_default=True, help="Generation length for exact-match.")
@click.option("--no-generate", is_flag=True, default=False, help="Skip generation exact-match (loss metrics only).")
@option_for(TrainConfig, "skip_bad")
@options_for(
    HarnessConfig,
    "num_fewshot",
    "limit",
    "apply_chat_template",
    "fewshot_as_multiturn",
    "gen_kwargs",
    "include_path",
    "log_samples",
    "output_path",
    "confirm_run_unsafe_code",
)
@click.option(
    "--per-example",
    "per_example",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write one JSON line per example (loss, correct, ...) for `mftlab compare-evals`.",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the result as JSON.")
@model_options
@device_option
@force_option
@seed_option
def command(
    model,
    mask_path,
    data,
    tasks,
    batch_size,
    max_seq_len,
    data_fraction,
    max_new_tokens,
    no_generate,
    skip_bad,
    per_example,
    as_json,
    device,
    force,
    seed,
    num_fewshot,
    limit,
    apply_chat_template,
    fewshot_as_multiturn,
    gen_kwargs,
    include_path,
    log_samples,
    output_path,
    confirm_run_unsafe_code,
    **model_kwargs,
):
    """Evaluate MODEL (optionally with a mask applied) on answer tokens of DATA.

    Reports the token-weighted loss over answer tokens, perplexity, token accuracy and, when
    records carry a reference answer, greedy-generation exact-match (normalised answers).

    \b
    Example:
      mftlab eval tiny-llama --data test.jsonl
      mftlab eval ./fft-model --mask run/mask.safetensors --data test.jsonl --json
      torchrun --nproc_per_node 2 -m mftlab.cli.main eval MODEL --data test.jsonl  (examples split;
          one GPU per process with NCCL where there are GPUs, gloo processes on the CPU)

    With --json the result also holds the peak memory (GiB; on a GPU the allocator's peak) of the
    largest process and of each process in rank order.

    With --tasks instead of --data, lm-evaluation-harness (`pip install 'mftlab[eval]'`) scores the
    model as it is in memory, mask applied, on its tasks (no merged copy on disk); the options after
    --tasks are lm-eval's own. Prints one line per task metric (--json: lm-eval's whole result with
    mftlab's header: model, mask, fingerprint check, mask ratio, method); --output-path writes it.

    \b
      mftlab eval ./fft-model --mask mft/mask.safetensors --tasks gsm8k --num-fewshot 5 --batch-size 16
      mftlab eval tiny-llama --tasks my_task --include-path ./tasks --limit 20 --output-path res.json

    --per-example FILE.jsonl writes one line per example: index, id (the record's `id`), key (a hash of
    its text), answer-token loss_sum and tokens, and `correct` (exact match: by generation where there is
    a reference, else teacher-forced; with --tasks, lm-eval's per-document acc / exact_match). Two such
    files are compared, with a confidence interval and a paired test, by `mftlab compare-evals A B`.
    """
    from mftlab.errors import ConfigError
    from mftlab.mask.maskfile import load_mask
    from mftlab.mft.apply import load_masked
    from mftlab.models.device import join_launch, resolve_device

    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("--batch-size and --max-new-tokens must be at least 1")
    if (data is None) == (tasks in (None, "")):
        raise click.UsageError("give --data FILE (loss and exact match) or --tasks T1,T2 (lm-eval), not both")
    if per_example is not None and not per_example.endswith(".jsonl"):
        raise ConfigError(f"--per-example '{per_example}' must be a .jsonl file (one JSON line per example)")
    harness = None
    if tasks:
        harness = HarnessConfig.from_text(
            tasks,
            num_fewshot=num_fewshot,
            limit=limit,
            batch_size=batch_size,
            apply_chat_template=apply_chat_template,
            fewshot_as_multiturn=fewshot_as_multiturn,
            gen_kwargs=gen_kwargs,
            include_path=include_path,
            log_samples=log_samples or per_example is not None,  # per-example rows come from lm-eval's samples
            output_path=output_path,
            confirm_run_unsafe_code=confirm_run_unsafe_code,
        )
    where = resolve_device(device)  # a GPU that is not there is reported before anything is loaded
    mask = load_mask(mask_path) if mask_path else None  # validate the file before loading a model
    launch = join_launch(where)  # under torchrun / accelerate launch the processes share the examples
    load = {k: model_kwargs[k] for k in ("dtype", "gguf_file", "trust_remote_code") if k in model_kwargs}
    loaded, mismatched = load_masked(model, mask, force=force, device=where, **load)
    if mismatched:
        click.echo(f"warning: {len(mismatched)} tensors differ from the mask's base (--force)", err=True)
    if harness is not None:
        _run_tasks(loaded, harness, launch, model, mask_path, mask, mismatched, as_json, per_example, log_samples)
        return
    data_options = {"max_seq_len": max_seq_len, "data_fraction": data_fraction, "seed": seed, "skip_bad": skip_bad}
    generation = {"generate": not no_generate, "max_new_tokens": max_new_tokens, "batch_size": batch_size}
    source = {"model": model, "mask": mask_path, "data": data}
    _run_data(loaded, launch, where, source, data_options, generation, per_example, as_json)


def _run_data(loaded, launch, where, source: dict, data_options: dict, generation: dict, per_example, as_json):
    """Loss, token accuracy and exact match on `source["data"]`; prints the numbers (process 0 only)."""
    from mftlab.training.data import load_examples
    from mftlab.training.evaluation import evaluate
    from mftlab.training.peak_memory import peak_memory

    o = data_options
    examples, report = load_examples(
        source["data"], loaded.tokenizer, o["max_seq_len"], o["data_fraction"], o["seed"], o["skip_bad"]
    )
    for problem in report.skipped[:5]:
        click.echo(f"skipped: {problem}", err=True)
    result = evaluate(
        loaded.model,
        loaded.tokenizer,
        examples,
        device=where,
        distributed=launch.distributed,
        per_example=per_example is not None,
        progress=_progress_lines() if launch.is_main else None,
        **generation,
    )
    peaks = peak_memory(where, distributed=launch.distributed)  # every process takes part
    if not launch.is_main:
        return
    if per_example is not None:
        from mftlab.significance.per_example import write_per_example

        write_per_example(per_example, result.per_example)
        click.echo(f"wrote {per_example} ({len(result.per_example)} examples)", err=True)
    if as_json:
        click.echo(json.dumps(dict(result.to_dict(), **source, **peaks), indent=2))
        return
    click.echo(f"loss            {result.loss:.4f}")
    click.echo(f"perplexity      {result.perplexity:.4f}")
    click.echo(f"token accuracy  {result.token_accuracy:.4f}")
    if result.exact_match is not None:
        click.echo(f"exact match     {result.exact_match:.4f}")
    click.echo(f"tokens          {result.tokens} in {result.examples} examples")


def _progress_lines():
    """Two progress lines on stderr: examples scored, then answers generated."""
    from mftlab.cli.progress_lines import callback

    lines = {"scored": callback("eval", "example"), "generated": callback("generate", "answer")}
    return lambda stage, done, total: lines[stage](done, total)


def _run_tasks(loaded, harness, launch, model, mask_path, mask, mismatched, as_json, per_example, log_samples):
    from mftlab.harness.run import header, metric_lines, per_example_rows, run_tasks, write_results

    results = run_tasks(loaded.model, loaded.tokenizer, harness, launch)
    if results is None:  # not process 0 of a launch
        return
    if per_example is not None:
        from mftlab.significance.per_example import write_per_example

        rows = per_example_rows(results)
        write_per_example(per_example, rows)
        click.echo(f"wrote {per_example} ({len(rows)} examples)", err=True)
        if not log_samples:  # asked for per-example rows only: the samples are not written with the results
            results.pop("samples", None)
    results = {"mftlab": header(model, mask_path, mask, mismatched, harness), **results}
    written = write_results(results, harness.output_path) if harness.output_path else []
    if as_json:
        click.echo(json.dumps({k: v for k, v in results.items() if k != "samples"}, indent=2))
        return
    for line in metric_lines(results):
        click.echo(line)
    for path in written:
        click.echo(f"wrote {path}")

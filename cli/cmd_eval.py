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
from mftlab.training.eval_run import EvalSettings, run_eval


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
def command(model, *, mask_path, data, tasks, per_example, as_json, device, force, **options):
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
    settings = EvalSettings.from_options(options)  # --batch-size and --max-new-tokens are checked first
    if (data is None) == (tasks in (None, "")):
        raise click.UsageError("give --data FILE (loss and exact match) or --tasks T1,T2 (lm-eval), not both")
    outcome = run_eval(
        model,
        settings,
        data=data,
        tasks=tasks,
        mask_path=mask_path,
        per_example=per_example,
        force=force,
        device=device,
        options=options,
        progress=_progress_lines(),
        note=lambda text: click.echo(text, err=True),
    )
    if outcome is not None:  # None: not process 0 of a launch
        _print(outcome, as_json)


def _progress_lines():
    """Two progress lines on stderr: examples scored, then answers generated."""
    from mftlab.cli.progress_lines import callback

    lines = {"scored": callback("eval", "example"), "generated": callback("generate", "answer")}
    return lambda stage, done, total: lines[stage](done, total)


def _print(outcome, as_json: bool) -> None:
    """The numbers of --data, or lm-eval's metrics of --tasks (and the files it wrote), on stdout."""
    from mftlab.harness.run import metric_lines

    if outcome.tasks is not None:
        if as_json:
            click.echo(json.dumps({k: v for k, v in outcome.tasks.items() if k != "samples"}, indent=2))
            return
        for line in metric_lines(outcome.tasks):
            click.echo(line)
        for path in outcome.written:
            click.echo(f"wrote {path}")
        return
    result = outcome.result
    if as_json:
        click.echo(json.dumps(dict(result.to_dict(), **outcome.source, **outcome.peak_memory), indent=2))
        return
    click.echo(f"loss            {result.loss:.4f}")
    click.echo(f"perplexity      {result.perplexity:.4f}")
    click.echo(f"token accuracy  {result.token_accuracy:.4f}")
    if result.exact_match is not None:
        click.echo(f"exact match     {result.exact_match:.4f}")
    click.echo(f"tokens          {result.tokens} in {result.examples} examples")

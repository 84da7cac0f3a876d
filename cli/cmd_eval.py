"""`mftlab eval`: loss, perplexity, token accuracy and exact-match of a model, with or without a mask."""

from __future__ import annotations

import json

import click

from mftlab.cli.options import (
    device_option,
    force_option,
    load_model_from,
    model_options,
    option_for,
    seed_option,
)
from mftlab.training.config import TrainConfig


@click.command("eval")
@click.argument("model")
@click.option("--mask", "mask_path", default=None, help="Apply this mask (mask.safetensors) before evaluating.")
@click.option("--data", required=True, help="Data to evaluate on (.jsonl/.json/.parquet/.csv, folder or hub id).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Examples per batch.")
@option_for(TrainConfig, "max_seq_len")
@click.option("--data-fraction", type=float, default=1.0, show_default=True, help="Evaluate on this seeded fraction.")
@click.option("--max-new-tokens", type=int, default=32, show_default=True, help="Generation length for exact-match.")
@click.option("--no-generate", is_flag=True, default=False, help="Skip generation exact-match (loss metrics only).")
@option_for(TrainConfig, "skip_bad")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the result as JSON.")
@model_options
@device_option
@force_option
@seed_option
def command(
    model,
    mask_path,
    data,
    batch_size,
    max_seq_len,
    data_fraction,
    max_new_tokens,
    no_generate,
    skip_bad,
    as_json,
    device,
    force,
    seed,
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
    """
    from mftlab.errors import ConfigError
    from mftlab.mask.maskfile import load_mask
    from mftlab.mft.apply import apply_mask_
    from mftlab.models.device import join_launch, resolve_device
    from mftlab.training.data import load_examples
    from mftlab.training.evaluation import evaluate
    from mftlab.training.peak_memory import peak_memory

    if batch_size < 1 or max_new_tokens < 1:
        raise ConfigError("--batch-size and --max-new-tokens must be at least 1")
    where = resolve_device(device)  # a GPU that is not there is reported before anything is loaded
    mask = load_mask(mask_path) if mask_path else None  # validate the file before loading a model
    launch = join_launch(where)  # under torchrun / accelerate launch the processes share the examples
    loaded = load_model_from(model, device=where, **model_kwargs)
    mismatched = apply_mask_(loaded.model, mask, force=force) if mask is not None else []
    if mismatched:
        click.echo(f"warning: {len(mismatched)} tensors differ from the mask's base (--force)", err=True)
    examples, report = load_examples(data, loaded.tokenizer, max_seq_len, data_fraction, seed, skip_bad)
    for problem in report.skipped[:5]:
        click.echo(f"skipped: {problem}", err=True)
    result = evaluate(
        loaded.model,
        loaded.tokenizer,
        examples,
        batch_size,
        generate=not no_generate,
        max_new_tokens=max_new_tokens,
        device=where,
        distributed=launch.distributed,
    )
    peaks = peak_memory(where, distributed=launch.distributed)  # every process takes part
    if not launch.is_main:
        return
    values = dict(result.to_dict(), model=model, mask=mask_path, data=data, **peaks)
    if as_json:
        click.echo(json.dumps(values, indent=2))
        return
    click.echo(f"loss            {result.loss:.4f}")
    click.echo(f"perplexity      {result.perplexity:.4f}")
    click.echo(f"token accuracy  {result.token_accuracy:.4f}")
    if result.exact_match is not None:
        click.echo(f"exact match     {result.exact_match:.4f}")
    click.echo(f"tokens          {result.tokens} in {result.examples} examples")

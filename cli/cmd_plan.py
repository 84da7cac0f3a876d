"""`mftlab plan`: GPU memory and time of a `train` or `landscape` run, with the arithmetic shown."""

import json

import click

from mftlab.cli.options import options_for, target_options
from mftlab.plan.planner import PlanConfig


def _value(term) -> str:
    from mftlab.plan.planner import fmt_bytes, fmt_count, fmt_seconds

    if term.unit == "B":
        return fmt_bytes(term.value)
    if term.unit == "s":
        return fmt_seconds(term.value)
    return f"{fmt_count(term.value)} {term.unit}"


def _table(title: str, terms) -> None:
    click.echo(title)
    width = max(len(t.name) for t in terms)
    for t in terms:
        name = t.name if t.counted else f"({t.name})"
        click.echo(f"  {name:<{width + 2}}  {t.formula} = {_value(t)}")


@click.command("plan")
@click.argument("model", metavar="MODEL_OR_CONFIG")
@options_for(PlanConfig, "task", "method")
@target_options
@options_for(
    PlanConfig,
    "score_dtype",
    "dtype",
    "precision",
    "batch_size",
    "eval_batch_size",
    "grad_accum",
    "seq_len",
    "gpus",
    "sharding",
    "gradient_checkpointing",
)
@click.option("--checkpointing/--no-checkpointing", "checkpointing_alias", default=None, hidden=True)
@options_for(
    PlanConfig,
    "pure_bf16",
    "plane",
    "attention",
    "gpu",
    "mfu",
    "tokens",
    "examples",
    "epochs",
    "lora_r",
    "grid",
    "landscape_tokens",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def command(model, as_json, checkpointing_alias, **options):
    """Estimate GPU memory per GPU and run time from MODEL_OR_CONFIG's config alone (no weights).

    MODEL_OR_CONFIG is a preset (tiny-llama, tiny-gpt2), a built-in shape (llama2-7b,
    llama3.1-8b), a model folder with config.json, a config.json file, or a hub id.

    \b
    Example (the paper's LLaMA2-7B math run: MFT on layers 4-7, batch 8, 8 GPUs):
      mftlab plan llama2-7b --layers 4-7 --batch-size 8 --seq-len 2048 --gpus 8 --examples 7473
      mftlab plan llama2-7b --method fft --batch-size 64 --seq-len 2048 --gpus 8 --sharding fsdp \\
          --gradient-checkpointing
      mftlab plan llama3.1-8b --task landscape --plane models --grid 21x21 --landscape-tokens 4096
      mftlab plan llama2-7b --task eval --batch-size 16 --seq-len 2048 --dtype bfloat16
    """
    from mftlab.plan.planner import make_plan

    if checkpointing_alias is not None:  # the old spelling, kept working
        options["gradient_checkpointing"] = options["gradient_checkpointing"] or checkpointing_alias
    config = PlanConfig(model=model, **options)
    result = make_plan(config)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_plan(config, result)


def _print_plan(config: PlanConfig, result) -> None:
    """The model line, the memory and time tables with their totals, and the notes."""
    from mftlab.plan.planner import fmt_bytes, fmt_count, fmt_seconds

    m = result.model
    what = {
        "train": f"train --method {config.method}",
        "landscape": f"landscape --plane {config.plane}",
        "eval": f"eval, batch {config.batch_size}",
    }[config.task]
    click.echo(
        f"{m['name']} ({m['model_type']}): {fmt_count(m['params'])} params, {m['layers']} layers, "
        f"hidden {m['hidden']}, vocab {m['vocab']}, {m['dtype']}; {what}"
    )
    if result.targeted_weights:
        first = f", backward from layer {result.first_layer}" if result.first_layer is not None else ""
        click.echo(f"targeted weights T = {result.targeted_weights:,}{first}")
    setup = (
        f"sharding {config.sharding}, checkpointing {'on' if config.gradient_checkpointing else 'off'}"
        if config.task == "train"
        else f"batch {config.batch_size}, seq {config.seq_len}"
    )
    _table(f"memory per GPU ({config.gpus} x {config.gpu}, {setup}):", result.memory)
    verdict = "fits" if result.fits else "does NOT fit"
    click.echo(f"  total per GPU = {fmt_bytes(result.memory_per_gpu)} of {fmt_bytes(result.gpu_memory)}: {verdict}")
    _table(f"time (peak x MFU {config.mfu}):", result.time)
    if result.step_seconds is not None:
        click.echo(f"  per optimizer step = {fmt_seconds(result.step_seconds)}")
    if result.total_seconds is not None:
        hours = result.total_seconds / 3600
        click.echo(
            f"  total = {fmt_seconds(result.total_seconds)} wall = {hours:.3g} h x {config.gpus} GPUs = "
            f"{hours * config.gpus:.3g} GPU-hours"
        )
    for note in result.notes:
        click.echo(f"note: {note}")

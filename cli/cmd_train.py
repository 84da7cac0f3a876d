"""`mftlab train`: learn a mask (MFT), or run full fine-tuning / LoRA baselines, with one loop."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from mftlab.cli.options import options_for
from mftlab.options_meta import option_names
from mftlab.training.config import TrainConfig, load_config_file, merge_config

# Every field but the MODEL argument is an option; help, choices and defaults come from the fields.
_options = options_for(TrainConfig, *(n for n in option_names(TrainConfig) if n not in ("model", "mftlab_version")))


class _Reporter:
    """Progress bar on a terminal, plain log lines otherwise."""

    def __init__(self):
        import os

        from mftlab.cli.progress_lines import Display
        from mftlab.progress.training import training_events

        self.bar = None
        self.tty = sys.stderr.isatty()
        # a protocol step launched by `mftlab protocol`: progress lines it forwards to its own output
        launched = os.environ.get("MFTLAB_PROGRESS") == "plain"
        label = os.environ.get("MFTLAB_PROGRESS_LABEL", "training")
        self.line = training_events(label, Display()) if launched else None

    def __call__(self, event):
        if self.line is not None:
            self.line(event)
        if event.event == "start":
            m = event.metrics
            click.echo(
                f"training {m['trainable']:,} parameters on {m['examples']} examples, "
                f"{event.total_steps} steps, {m['processes']} process(es)",
                err=True,
            )
            if self.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", file=sys.stderr)
        elif event.event == "step" and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.metrics['loss']:.4f}")
        elif event.event == "log" and self.bar is None:
            fields = " ".join(f"{k}={_fmt(v)}" for k, v in event.metrics.items())
            click.echo(fields, err=True)
        elif event.event in ("info", "warning", "checkpoint", "best"):
            text = event.message or f"{event.event} at step {event.step}: {event.metrics}"
            (self.bar.write if self.bar is not None else (lambda t: click.echo(t, err=True)))(text)
        elif event.event == "done" and self.bar is not None:
            self.bar.close()


def _fmt(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@click.command("train")
@click.argument("model", required=False)
@click.option("--config", "config_file", default=None, help="YAML or JSON file of options (flags given here win).")
@click.option("--dry-run", is_flag=True, help="List the parameters --targets/--layers/--exclude match, and exit.")
@_options
@click.pass_context
def command(ctx, model, config_file, dry_run, **flags):
    """Learn a binary mask over a frozen fine-tuned MODEL (MFT), or fine-tune it (fft / lora).

    MODEL is a Hugging Face folder, a hub id or a preset (tiny-llama, tiny-gpt2). Data records
    are {"messages": [...]}, {"prompt", "completion"} or {"text"}; the loss covers answer tokens.

    \b
    Example (offline, with the built-in tiny model):
      mftlab train tiny-llama --data train.jsonl --out run --mask-ratio 0.1 --max-steps 50
      mftlab train tiny-llama --data train.jsonl --out run --resume
      accelerate launch --multi_gpu --num_processes 2 -m mftlab.cli.main train MODEL --data d.jsonl --out run
      torchrun --nproc_per_node 2 -m mftlab.cli.main train MODEL --data d.jsonl --out run
      torchrun --nproc_per_node 8 -m mftlab.cli.main train MODEL --method fft --sharding fsdp \\
          --dtype bfloat16 --data d.jsonl --out run

    Several processes: both launchers above start two gloo processes on a CPU-only machine too;
    `accelerate launch --cpu --num_processes 2` starts only one there (it needs MPI for more).
    --batch-size is the global batch of one optimizer step, whatever the number of processes.
    --sharding fsdp shards the model over the launched processes (not with accelerate's own FSDP or
    DeepSpeed configs); 16-bit trainable weights get fp32 master copies unless --pure-bf16.
    """
    given = {name for name in flags if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if model is not None:
        flags["model"], given = model, given | {"model"}
    file_values = load_config_file(config_file) if config_file else {}
    if dry_run:
        return _list_targets({**file_values, **{k: v for k, v in flags.items() if k in given}})
    for name in ("model", "data", "out"):
        if flags.get(name) is None and name not in file_values:
            raise click.UsageError(
                f"missing {'MODEL' if name == 'model' else '--' + name} (give it here or in --config)"
            )
    config = merge_config(file_values, flags, given)

    from mftlab.cli.options import own_folder

    ctx.with_resource(own_folder(config.out))  # before the slow imports: a second writer is refused at once
    from mftlab.training.loop import train

    result = train(config, progress=_Reporter())
    from accelerate import PartialState

    if PartialState().is_main_process:
        click.echo(_summary(result))


def _list_targets(values: dict) -> None:
    """--dry-run: the parameters the targeting options match, from the flags given and the --config file."""
    from mftlab.cli.options import echo_targets, load_model_from
    from mftlab.mft.targeting import TargetSpec, resolve_targets

    source = values.get("model")
    if source is None:
        raise click.UsageError("missing MODEL (give it here or in --config)")
    loaded = load_model_from(
        source, values.get("dtype", "auto"), values.get("gguf_file"), bool(values.get("trust_remote_code"))
    )
    spec = TargetSpec.parse(values.get("targets", "all-linear"), values.get("layers"), values.get("exclude"))
    echo_targets(resolve_targets(loaded.model, spec))


def _summary(result) -> str:
    loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
    line = f"wrote {result.output_path} after {result.steps} steps (loss {loss}"
    if result.mask_ratio is not None:
        line += f", mask ratio {result.mask_ratio:.4f}"
    if result.best_step is not None:
        line += f", best eval loss {result.best_eval_loss:.4f} at step {result.best_step}"
    return line + ")"

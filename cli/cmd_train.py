"""`mftlab train`: learn a mask (MFT), or run full fine-tuning / LoRA baselines, with one loop."""

from __future__ import annotations

import sys

import click
from click.core import ParameterSource

from mftlab.training.config import METHODS, PRECISIONS, SHARDINGS, TrainConfig, load_config_file, merge_config

D = TrainConfig.__dataclass_fields__  # defaults come from the config class, never repeated here


def _default(name):
    return D[name].default


def _opt(name, *args, **kwargs):
    flag = "--" + name.replace("_", "-")
    kwargs.setdefault("default", _default(name))
    kwargs.setdefault("show_default", True)
    return click.option(flag, name, *args, **kwargs)


_OPTIONS = [
    _opt("data", default=None, help="Training data: .jsonl/.json/.parquet/.csv, a save_to_disk folder, or a hub id."),
    _opt("out", default=None, help="Output folder (mask.safetensors, config.json, metrics.jsonl, checkpoints/)."),
    _opt("method", type=click.Choice(METHODS), help="mask = MFT; fft = full fine-tuning; lora = LoRA (needs peft)."),
    _opt("dtype", help="Weight dtype to load the model in (auto, float32, bfloat16, float16)."),
    _opt("gguf_file", help="Load this GGUF file (in the model folder) through transformers."),
    _opt("trust_remote_code", is_flag=True, help="Allow custom model code from the model folder."),
    _opt("targets", help="Modules to mask: names/suffixes, re:<regex>, or all-linear (no output head)."),
    _opt("layers", help="Layer ranges, e.g. 4-7 or 0-3,20-23 (the paper's local MFT)."),
    _opt("exclude", help="Modules to leave out (same syntax as --targets)."),
    _opt("mask_ratio", type=float, help="Fraction of targeted weights masked (0.1 = the paper's 10%)."),
    _opt("selection", type=click.Choice(["topk", "threshold"]), help="topk: exact K lowest scores masked; threshold: kept where score > T."),
    _opt("granularity", type=click.Choice(["tensor", "row", "global"]), help="topk comparison group: per tensor, per output row, or global."),
    _opt("threshold", type=float, help="T for --selection threshold (the paper's global MFT uses -0.035)."),
    _opt("min_keep_ratio", type=float, help="threshold: fraction of each tensor that always stays kept."),
    _opt("rank_by", type=click.Choice(["raw", "abs"]), help="Rank raw scores (default) or |scores| (the reference code)."),
    _opt("score_init", type=click.Choice(["random", "magnitude", "uniform"]),
         help="random N(0,std^2) (step-0 mask is a random prune), magnitude (step-0 mask = magnitude mask), uniform U(-std,std)."),
    _opt("score_std", type=float, help="Scale of the initial scores."),
    _opt("score_dtype", type=click.Choice(["fp32", "bf16"]), help="Score dtype (bf16 halves their memory)."),
    _opt("score_lr", type=float, help="Learning rate of the mask scores (method mask)."),
    _opt("lr", type=float, help="Learning rate of the weights (methods fft and lora)."),
    _opt("weight_decay", type=float, help="AdamW weight decay."),
    _opt("warmup_ratio", type=float, help="Fraction of steps of linear warm-up (then linear decay to 0)."),
    _opt("max_grad_norm", type=float, help="Gradient clipping norm (0 = off)."),
    _opt("epochs", type=float, help="Passes over the data (ignored with --max-steps)."),
    _opt("max_steps", type=int, help="Optimizer steps to run (overrides --epochs)."),
    _opt("batch_size", type=int, help="Examples per optimizer step, over all processes."),
    _opt("grad_accum", type=int, help="Micro-batches per optimizer step on each process."),
    _opt("precision", type=click.Choice(PRECISIONS), help="auto = bf16 autocast where the GPU supports it, else fp32."),
    _opt("seed", type=int, help="Seed of score init, data order and data subset."),
    _opt("sharding", type=click.Choice(SHARDINGS),
         help="fsdp: shard weights, grads and optimizer state over the processes (FSDP2; mask and fft)."),
    _opt("gradient_checkpointing", is_flag=True, help="Recompute each layer in the backward pass (less memory)."),
    _opt("pure_bf16", is_flag=True, help="Train 16-bit weights without fp32 master copies (small updates are lost)."),
    _opt("max_seq_len", type=int, help="Tokens per example (longer ones are truncated)."),
    _opt("data_fraction", type=float, help="Use this seeded fraction of the data (data-ratio ablation)."),
    _opt("skip_bad", is_flag=True, help="Skip malformed records (reported with file:line) instead of stopping."),
    _opt("eval_data", help="Validation data, evaluated every --eval-every steps; the best result goes to OUT/best."),
    _opt("eval_every", type=int, help="Evaluate every N steps (0 = never)."),
    _opt("eval_batch_size", type=int, help="Batch size of evaluation."),
    _opt("lora_r", type=int, help="LoRA rank."),
    _opt("lora_alpha", type=int, help="LoRA alpha."),
    _opt("lora_dropout", type=float, help="LoRA dropout."),
    _opt("log_every", type=int, help="Write a metrics line every N steps."),
    _opt("save_every", type=int, help="Write a checkpoint every N steps (0 = never)."),
    _opt("keep_checkpoints", type=int, help="How many recent checkpoints to keep."),
    _opt("resume", is_flag=True, help="Continue the run in --out from its last checkpoint."),
    _opt("force", is_flag=True, help="Start over in an --out folder that already holds a run."),
    _opt("report_to", help="Also send the metrics rows to tensorboard, wandb and/or mlflow (comma-separated; "
                           "needs the package, e.g. pip install 'mftlab[tensorboard]'). TensorBoard logs go to OUT/logs."),
    _opt("dist_timeout", type=float, help="Seconds a process waits for the others (multi-process) before the run fails."),
]


def _options(func):
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


class _Reporter:
    """Progress bar on a terminal, plain log lines otherwise."""

    def __init__(self):
        self.bar = None
        self.tty = sys.stderr.isatty()

    def __call__(self, event):
        if event.event == "start":
            m = event.metrics
            click.echo(f"training {m['trainable']:,} parameters on {m['examples']} examples, "
                       f"{event.total_steps} steps, {m['processes']} process(es)", err=True)
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
      torchrun --nproc_per_node 8 -m mftlab.cli.main train MODEL --method fft --sharding fsdp --dtype bfloat16 --data d.jsonl --out run

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
        from mftlab.cli.options import echo_targets, load_model_from
        from mftlab.mft.targeting import TargetSpec, resolve_targets

        values = {**file_values, **{k: v for k, v in flags.items() if k in given}}
        source = values.get("model")
        if source is None:
            raise click.UsageError("missing MODEL (give it here or in --config)")
        loaded = load_model_from(source, values.get("dtype", "auto"), values.get("gguf_file"),
                                 bool(values.get("trust_remote_code")))
        spec = TargetSpec.parse(values.get("targets", "all-linear"), values.get("layers"), values.get("exclude"))
        echo_targets(resolve_targets(loaded.model, spec))
        return
    for name in ("model", "data", "out"):
        if flags.get(name) is None and name not in file_values:
            raise click.UsageError(f"missing {'MODEL' if name == 'model' else '--' + name} (give it here or in --config)")
    config = merge_config(file_values, flags, given)

    from mftlab.cli.options import own_folder

    ctx.with_resource(own_folder(config.out))  # before the slow imports: a second writer is refused at once
    from mftlab.training.loop import train

    result = train(config, progress=_Reporter())
    from accelerate import PartialState

    if PartialState().is_main_process:
        loss = f"{result.final_loss:.4f}" if result.final_loss is not None else "n/a"
        line = f"wrote {result.output_path} after {result.steps} steps (loss {loss}"
        if result.mask_ratio is not None:
            line += f", mask ratio {result.mask_ratio:.4f}"
        if result.best_step is not None:
            line += f", best eval loss {result.best_eval_loss:.4f} at step {result.best_step}"
        click.echo(line + ")")

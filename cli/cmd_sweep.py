"""`mftlab sweep layers|ratio|data|score-lr|score-init`: the paper's ablation sweeps (Figures 3-5) and the
method's own knobs, for any model and data; the selected point is the best on validation."""

import click

from mftlab.cli.cmd_train import _opt
from mftlab.errors import ConfigError

_TRAIN_OPTIONS = [
    _opt("data", default=None, help="MFT training data (.jsonl/.json/.parquet/.csv, a save_to_disk folder)."),
    _opt("targets", help="Modules to mask: names/suffixes, re:<regex>, or all-linear."),
    _opt("layers", help="Layer ranges for the ratio and data sweeps, e.g. 4-7."),
    _opt("exclude", help="Modules to leave out."),
    _opt("mask_ratio", type=float, help="Mask ratio for the layers and data sweeps."),
    _opt("data_fraction", type=float, help="Data fraction for the layers and ratio sweeps (the paper's Figure 3 uses 0.1)."),
    _opt("score_lr", type=float, help="Learning rate of the mask scores."),
    _opt("score_init", type=click.Choice(["random", "magnitude", "uniform"]), help="Score initialisation."),
    _opt("epochs", type=float, help="Passes over the data per point."),
    _opt("max_steps", type=int, help="Optimizer steps per point (overrides --epochs)."),
    _opt("batch_size", type=int, help="Examples per optimizer step."),
    _opt("max_seq_len", type=int, help="Tokens per example."),
    _opt("dtype", help="Weight dtype (auto, float32, bfloat16, float16)."),
    _opt("gguf_file", help="Load this GGUF file (in the model folder) through transformers."),
    _opt("trust_remote_code", is_flag=True, help="Allow custom model code from the model folder."),
    _opt("seed", type=int, help="Seed of every point."),
]


def _train_options(func):
    for option in reversed(_TRAIN_OPTIONS):
        func = option(func)
    return func


def _floats(text: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{name} '{text}' is not a comma list of numbers; write e.g. 0.02,0.1,0.4") from None


@click.command("sweep")
@click.argument("axis", type=click.Choice(["layers", "ratio", "data", "score-lr", "score-init"]))
@click.argument("model")
@click.option("--eval-data", required=True, help="Validation data every point is scored on (and selected on).")
@click.option("--test-data", default=None, help="Test data, scored and reported beside each point; never used to select.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder (re-running resumes).")
@click.option("--group-size", type=int, default=4, show_default=True, help="layers: consecutive layers per group.")
@click.option("--ratios", default="0.02,0.05,0.1,0.2,0.4", show_default=True, help="ratio: mask ratios to try.")
@click.option("--fractions", default="0.1,0.25,0.5,1", show_default=True, help="data: data fractions to try.")
@click.option("--score-lrs", default="1e-4,1e-3,1e-2", show_default=True, help="score-lr: score learning rates to try.")
@click.option("--score-inits", default="random,magnitude", show_default=True,
              help="score-init: initialisations to try (random, magnitude, uniform).")
@click.option("--no-figures", is_flag=True, help="Write JSON and CSV only (redraw later with mftlab plot).")
@_train_options
def command(axis, model, eval_data, test_data, out, group_size, ratios, fractions, score_lrs, score_inits, no_figures,
            **train):
    """MFT from MODEL (the fine-tuned model) at every point of one sweep, scored on --eval-data
    against MODEL itself (the FFT line): `layers` tries groups of --group-size consecutive layers
    shallow to deep, `ratio` mask ratios, `data` data fractions, `score-lr` score learning rates,
    `score-init` score initialisations. Every point starts from MODEL with the same data and
    seed; finished points are reused. The point with the lowest validation loss is selected
    and marked in OUT/sweep.md (--test-data numbers are shown, never used to choose).

    \b
    Example:
      mftlab sweep layers ./fft-model --data train.jsonl --eval-data val.jsonl --group-size 4 --out sweep-layers
      mftlab sweep score-lr ./fft-model --data train.jsonl --eval-data val.jsonl --test-data test.jsonl \\
          --layers 4-7 --score-lrs 1e-4,1e-3,1e-2 --out sweep-score-lr
    """
    from mftlab.recipes.sweeps import SweepConfig, run_sweep
    from mftlab.files.folder_lock import hold_folder
    from mftlab.training.config import TrainConfig

    if not train["data"]:
        raise click.UsageError("--data is required")
    inits = tuple(x.strip() for x in score_inits.split(",") if x.strip())
    config = SweepConfig(axis, TrainConfig(model=model, out=out, method="mask", **train), eval_data, group_size,
                         _floats(ratios, "ratios"), _floats(fractions, "fractions"), _floats(score_lrs, "score-lrs"),
                         inits, test_data)
    click.get_current_context().with_resource(hold_folder(out))  # one writer at a time, to the last figure
    doc = run_sweep(config, out, lambda done, total, message: click.echo(f"[{done}/{total}] {message}"))
    if not no_figures:
        from mftlab.figures import sweep_figures

        sweep_figures.render(out)
    ref = doc["reference"]
    click.echo(f"starting model: loss {ref['loss']:.4f}, answer accuracy {ref['answer_accuracy']:.2%}")
    for p in doc["points"]:
        line = f"  {axis} {p['label']:>9}: validation loss {p['loss']:.4f}, answer accuracy {p['answer_accuracy']:.2%}"
        if "test_loss" in p:
            line += f"; test loss {p['test_loss']:.4f}"
        click.echo(line + ("   <- selected (best validation loss)" if p["selected"] else ""))
    click.echo(f"wrote {out}/sweep.json, {out}/sweep.md")

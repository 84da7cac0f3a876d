"""`mftlab sweep layers|ratio|data|score-lr|score-init`: the paper's ablation sweeps (Figures 3-5) and the
method's own knobs, for any model and data; the selected point is the best on validation."""

import click

from mftlab.cli.options import device_option, floats, model_options, no_figures_option, option_for, stack_options
from mftlab.recipes.sweeps import AXES, SweepConfig
from mftlab.training.config import TrainConfig

# The MFT run every point starts from: TrainConfig's own options; a sweep axis overrides its own field.
_train_options = stack_options(
    option_for(TrainConfig, "data"),
    option_for(TrainConfig, "targets"),
    option_for(TrainConfig, "layers", note="The layers sweep sets its own."),
    option_for(TrainConfig, "exclude"),
    option_for(TrainConfig, "mask_ratio", note="The ratio sweep sets its own."),
    option_for(TrainConfig, "data_fraction", note="The data sweep sets its own; the paper's Figure 3 uses 0.1."),
    option_for(TrainConfig, "score_lr", note="The score-lr sweep sets its own."),
    option_for(TrainConfig, "score_init", note="The score-init sweep sets its own."),
    option_for(TrainConfig, "epochs"),
    option_for(TrainConfig, "max_steps"),
    option_for(TrainConfig, "batch_size"),
    option_for(TrainConfig, "max_seq_len"),
    model_options,
    device_option,
    option_for(TrainConfig, "seed"),
)


@click.command("sweep")
@click.argument("axis", type=click.Choice(list(AXES)))
@click.argument("model")
@option_for(SweepConfig, "eval_data", required=True)
@option_for(SweepConfig, "test_data")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Results folder (re-running resumes).")
@option_for(SweepConfig, "group_size")
@option_for(SweepConfig, "ratios")
@option_for(SweepConfig, "fractions")
@option_for(SweepConfig, "score_lrs")
@option_for(SweepConfig, "score_inits")
@no_figures_option
@_train_options
def command(
    axis, model, eval_data, test_data, out, group_size, ratios, fractions, score_lrs, score_inits, no_figures, **train
):
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
    from mftlab.cli.progress_lines import Display
    from mftlab.files.folder_lock import hold_folder
    from mftlab.recipes.sweeps import run_sweep

    if not train["data"]:
        raise click.UsageError("--data is required")
    inits = tuple(x.strip() for x in score_inits.split(",") if x.strip())
    config = SweepConfig(
        axis,
        TrainConfig(model=model, out=out, method="mask", **train),
        eval_data,
        group_size,
        floats(ratios, "ratios"),
        floats(fractions, "fractions"),
        floats(score_lrs, "score-lrs"),
        inits,
        test_data,
    )
    click.get_current_context().with_resource(hold_folder(out))  # one writer at a time, to the last figure
    say = lambda done, total, message: click.echo(f"[{done}/{total}] {message}")  # noqa: E731
    doc = run_sweep(config, out, say, report=Display(indent="  "))
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

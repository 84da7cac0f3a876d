"""`mftlab landscape`: 2-D (or 1-D) loss landscapes with train and test loss, resumable, multi-process."""

from __future__ import annotations

import click

from mftlab.analysis.directions import DirectionSpec
from mftlab.analysis.landscape import LandscapeConfig
from mftlab.cli.options import (
    device_option,
    force_option,
    model_options,
    no_figures_option,
    option_for,
    seed_option,
)
from mftlab.training.config import TrainConfig

# The options that go into the LandscapeConfig (what is computed); the rest make the LandscapeRequest.
CONFIG_OPTIONS = (
    "seed",
    "normalization",
    "include_1d",
    "orthogonalize",
    "targets",
    "layers",
    "exclude",
    "cache_directions",
)


def _progress():
    """Process 0's progress: a start line, the time estimate, then a bar of points."""
    state = {"bar": None}

    def report(kind: str, data: dict):
        if kind == "start":
            click.echo(
                f"{data['points']} points ({data['done']} already done), "
                f"{data['tokens']:,} label tokens per point (train + test)"
            )
        elif kind == "estimate":
            minutes = data["seconds"] / 60
            click.echo(
                f"estimate: {data['points']} points x {data['tokens_per_point']:,} tokens; first point took "
                f"{data['seconds_per_point']:.2f} s -> about {minutes:.1f} min for this process"
            )
            from tqdm import tqdm

            state["bar"] = tqdm(total=data["points"], initial=0, unit="pt", desc="landscape")
        elif kind == "point" and state["bar"] is not None:
            state["bar"].update(1)
            if data["done"] == data["total"]:
                state["bar"].close()

    return report


def _figures(out: str) -> list[str]:
    from mftlab.figures.landscape_figures import render

    return render(out)


@click.command("landscape")
@click.option(
    "--model",
    "models",
    multiple=True,
    required=True,
    help="Model (preset, folder or hub id), or FOLDER::MASK_FILE for a model with a mask applied. "
    "random: the centre, then models to project; models: three; line: two.",
)
@option_for(LandscapeConfig, "plane")
@option_for(LandscapeConfig, "grid")
@option_for(LandscapeConfig, "ranges", dest="range_")
@option_for(LandscapeConfig, "margin")
@click.option(
    "--data",
    required=True,
    help="Training data (file or folder); its first --max-tokens label tokens give the train loss.",
)
@click.option("--eval-data", required=True, help="Test data; its first --max-tokens label tokens give the test loss.")
@click.option(
    "--max-tokens", type=int, default=4096, show_default=True, help="Label tokens per subset (whole examples)."
)
@option_for(TrainConfig, "max_seq_len")
@click.option("--batch-size", type=int, default=8, show_default=True)
@option_for(DirectionSpec, "normalization")
@option_for(DirectionSpec, "include_1d")
@option_for(DirectionSpec, "orthogonalize")
@click.option(
    "--targets",
    default=None,
    help="Perturb only these modules (names, re:<regex>, all-linear). Default: every weight matrix.",
)
@click.option("--layers", default=None, help="Layer ranges for --targets, e.g. 4-7.")
@click.option("--exclude", default=None, help="Modules to leave unperturbed (same syntax as --targets).")
@click.option(
    "--mask-directions",
    default=None,
    help="Mask file: random directions are zero on the weights it masks, so no masked weight is revived.",
)
@click.option(
    "--labels", default=None, help="Comma-separated marker labels, one per --model (e.g. 'FFT,continued FFT,MFT')."
)
@option_for(LandscapeConfig, "cache_directions")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out, computing only its missing points.")
@no_figures_option
@force_option
@option_for(TrainConfig, "dist_timeout")
@seed_option
@model_options
@device_option
def command(plane, grid, range_, margin, labels, no_figures, **options):
    """Loss landscape (train and test loss) on a grid over a plane or line in weight space.

    \b
    Examples:
      mftlab landscape --model tiny-llama --data train.jsonl --eval-data test.jsonl --grid 21x21 --out runs/ls
      mftlab landscape --plane models --model runs/fft --model runs/fft-cont \\
          --model runs/fft::runs/mft/mask.safetensors --labels 'FFT,continued FFT,MFT' \\
          --data train.jsonl --eval-data test.jsonl --out runs/ls3
      torchrun --nproc_per_node 2 -m mftlab.cli.main landscape ...   (several processes split the grid)

    landscape.json also records the peak memory (GiB) of the largest process and of each process.
    """
    from mftlab.analysis.landscape_run import LandscapeRequest, run_landscape

    computed = {name: options.pop(name) for name in CONFIG_OPTIONS}
    config = LandscapeConfig.from_options(plane, grid, range_, margin, **computed)
    label_list = tuple(s.strip() for s in labels.split(",")) if labels else None
    request = LandscapeRequest(labels=label_list, **options)
    run = run_landscape(request, config, progress=_progress(), draw=None if no_figures else _figures)
    if run is None:  # not process 0 of a launch
        return
    for m in run.result.markers:
        extra = f", off-plane {m['off_plane_relative']:.1%}" if "off_plane_relative" in m else ""
        click.echo(
            f"{m['label']}: ({m['x']:.4g}, {m['y']:.4g}) train {m['train_loss']:.4f} test {m['test_loss']:.4f}{extra}"
        )
    click.echo(f"computed {run.result.computed} points here; {run.result.seconds_per_point:.3f} s per point")
    for path in run.written:
        click.echo(path)

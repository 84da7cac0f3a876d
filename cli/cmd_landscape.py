"""`mftlab landscape`: 2-D (or 1-D) loss landscapes with train and test loss, resumable, multi-process."""

from __future__ import annotations

import os

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
from mftlab.errors import ConfigError
from mftlab.models.tokenizer import padding_id
from mftlab.training.config import TrainConfig

MASK_SEPARATOR = "::"


def _split_model(text: str) -> tuple[str, str | None]:
    if MASK_SEPARATOR in text:
        folder, mask = text.split(MASK_SEPARATOR, 1)
        if not folder or not mask:
            raise ConfigError(f"--model '{text}': write FOLDER::MASK_FILE, e.g. runs/fft::runs/mft/mask.safetensors")
        return folder, mask
    return text, None


def _loader(text: str, dtype: str, trust_remote_code: bool, device, force: bool, gguf_file: str | None = None):
    def load():
        from mftlab.mft.apply import load_masked

        source, mask_path = _split_model(text)
        loaded, _ = load_masked(
            source,
            mask_path,  # a bad mask fails before any weights are loaded
            force=force,
            dtype=dtype,
            gguf_file=gguf_file,
            trust_remote_code=trust_remote_code,
            device=device,
        )
        return loaded

    return load


def _progress(rank: int):
    state = {"bar": None}

    def report(kind: str, data: dict):
        if rank != 0:
            return
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
def command(
    models,
    plane,
    grid,
    range_,
    margin,
    data,
    eval_data,
    max_tokens,
    max_seq_len,
    batch_size,
    normalization,
    include_1d,
    orthogonalize,
    targets,
    layers,
    exclude,
    mask_directions,
    labels,
    cache_directions,
    out,
    resume,
    no_figures,
    force,
    dist_timeout,
    seed,
    dtype,
    gguf_file,
    trust_remote_code,
    device,
):
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
    from mftlab.analysis.landscape import landscape, prepare_data
    from mftlab.mask.maskfile import load_mask
    from mftlab.models.device import join_launch, resolve_device
    from mftlab.training.data import load_examples

    config = LandscapeConfig.from_options(
        plane,
        grid,
        range_,
        margin,
        seed=seed,
        normalization=normalization,
        include_1d=include_1d,
        orthogonalize=orthogonalize,
        targets=targets,
        layers=layers,
        exclude=exclude,
        cache_directions=cache_directions,
    )
    label_list = [s.strip() for s in labels.split(",")] if labels else None
    if label_list is not None and len(label_list) != len(models):
        raise ConfigError(f"--labels has {len(label_list)} labels for {len(models)} --model; give one per model")
    for path in (data, eval_data):
        if (os.path.sep in path or os.path.splitext(path)[1]) and not os.path.exists(path):
            raise ConfigError(f"data '{path}' does not exist; check --data / --eval-data")
    mask = load_mask(mask_directions) if mask_directions else None

    if not dist_timeout > 0:
        raise ConfigError(f"--dist-timeout {dist_timeout} must be positive seconds (default 1800 = 30 minutes)")
    from mftlab.files.folder_lock import hold_folder
    from mftlab.files.results import add_to_result
    from mftlab.training.dist_faults import distributed_faults
    from mftlab.training.peak_memory import peak_memory

    where = resolve_device(device)
    launch = join_launch(where, timeout_s=dist_timeout)
    rank, world = launch.rank, launch.world_size
    # Process 0 owns --out from here (before any check of it) to the end of the command; the others wait.
    click.get_current_context().with_resource(hold_folder(out))
    loaders = [_loader(m, dtype, trust_remote_code, where, force, gguf_file) for m in models]
    first = loaders[0]()
    tokenizer = first.tokenizer
    pad_id = padding_id(tokenizer)
    sets = []
    for source in (data, eval_data):
        examples, _ = load_examples(source, tokenizer, max_seq_len)
        sets.append(prepare_data(examples, pad_id, batch_size, max_tokens, where))
    sources = [first.model] + [(lambda load=load: load().model) for load in loaders[1:]]
    info = {
        "sources": list(models),
        "mask_directions_file": mask_directions,
        "data_sources": {"train": data, "test": eval_data},
        "max_tokens": max_tokens,
        "max_seq_len": max_seq_len,
        "batch_size": batch_size,
    }
    with distributed_faults(dist_timeout):
        result = landscape(
            sources,
            sets[0],
            sets[1],
            config,
            out,
            label_list,
            mask,
            force,
            info,
            resume,
            rank,
            world,
            launch.barrier,
            _progress(rank),
        )
        peaks = peak_memory(where, distributed=launch.distributed)  # every process takes part
    if rank != 0:
        return
    add_to_result(out, "landscape", peaks)
    written = result.save(out)  # already there: only their paths
    if not no_figures:
        from mftlab.figures.landscape_figures import render

        written += render(out)
    for m in result.markers:
        extra = f", off-plane {m['off_plane_relative']:.1%}" if "off_plane_relative" in m else ""
        click.echo(
            f"{m['label']}: ({m['x']:.4g}, {m['y']:.4g}) train {m['train_loss']:.4f} test {m['test_loss']:.4f}{extra}"
        )
    click.echo(f"computed {result.computed} points here; {result.seconds_per_point:.3f} s per point")
    for path in written:
        click.echo(path)

"""`mftlab stats`: sparsity statistics of a mask (and the dynamics of a training run), with figures."""

import os

import click

from mftlab.cli.options import device_option, force_option, load_model_from, model_options, no_figures_option
from mftlab.errors import MftlabError


@click.command("stats")
@click.argument("mask_path", metavar="[MASK]", required=False)
@click.option(
    "--model",
    default=None,
    help="The base the mask was learned on: adds |w| of masked vs kept weights and the magnitude-mask overlap.",
)
@click.option(
    "--base",
    "pretrained",
    default=None,
    help="The pre-trained model before fine-tuning (needs --model): adds |w_model - w_base|.",
)
@click.option(
    "--run",
    "run_dir",
    default=None,
    help="A training run folder: adds flips and Hamming distances over its checkpoint masks.",
)
@click.option("--out", required=True, type=click.Path(), help="Folder for stats.json, stats.csv and the figures.")
@no_figures_option
@force_option
@model_options
@device_option
def command(mask_path, model, pretrained, run_dir, out, no_figures, force, device, **model_kw):
    """Masked fraction per tensor, layer, projection and overall; concentration over rows and
    columns; with --model and --base, what the masked weights were. MASK defaults to the final
    mask of --run.

    \b
    Example:
      mftlab stats mask.safetensors --model tiny-llama --out results/stats
      mftlab stats --run runs/mft-math --out results/dynamics
    """
    from mftlab.analysis.dynamics import mask_dynamics, run_masks
    from mftlab.analysis.stats import compute_mask_stats, require_model_with_base, summary_lines
    from mftlab.cli.progress_lines import callback
    from mftlab.files.folder_lock import hold_folder
    from mftlab.mask.maskfile import load_mask
    from mftlab.models.device import resolve_device

    if mask_path is None and run_dir is None:
        raise MftlabError("give a MASK file or --run DIR (a training run folder); see mftlab stats --help")
    require_model_with_base(model, pretrained)
    if os.path.exists(out) and not os.path.isdir(out):
        raise MftlabError(f"--out '{out}' is a file; pass a folder for the results")
    where = resolve_device(device)  # where --model and --base are loaded
    click.get_current_context().with_resource(hold_folder(out, clean="top"))  # one writer at a time
    dynamics = None
    if run_dir is not None:
        paths, steps, labels = run_masks(run_dir)
        dynamics = mask_dynamics(paths, steps, labels, progress=callback("dynamics", "snapshot"))
        mask_path = mask_path or paths[-1]
    mask = load_mask(mask_path)
    base_model = load_model_from(model, device=where, **model_kw).model if model else None
    before = load_model_from(pretrained, device=where, **model_kw).model if pretrained else None
    result = compute_mask_stats(
        mask, base_model, before, force=force, source=os.fspath(mask_path), progress=callback("stats", "tensor")
    )

    written = _save(out, result, dynamics, no_figures)
    for line in summary_lines(result, dynamics):
        click.echo(line)
    click.echo(f"wrote {len(written)} files to {out}")


def _save(out: str, result, dynamics, no_figures: bool) -> list[str]:
    """stats.json / .csv (and dynamics.json / .csv with --run) in `out`, then their figures."""
    written = result.save(out)
    if dynamics is not None:
        written += dynamics.save(out)
    if not no_figures:
        from mftlab.figures import stats_figures

        written += stats_figures.render(out)
        if dynamics is not None:
            from mftlab.figures import dynamics_figures

            written += dynamics_figures.render(out)
    return written

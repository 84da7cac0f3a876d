"""`mftlab baseline`: random and magnitude (L1) masks without training."""

import click

from mftlab.cli.options import echo_targets, load_model_from, model_options, seed_option, target_options, target_spec_from
from mftlab.codecs import CODECS
from mftlab.errors import ConfigError
from mftlab.selection import GRANULARITIES


@click.command("baseline")
@click.argument("model")
@click.option("--kind", type=click.Choice(["random", "magnitude"]), required=True,
              help="random: seeded uniform choice; magnitude: smallest |w| (the paper's L1 mask).")
@click.option("--mask-ratio", type=float, default=0.1, show_default=True, help="Fraction of targeted weights to mask.")
@click.option("--granularity", type=click.Choice(list(GRANULARITIES)), default="tensor", show_default=True,
              help="Comparison group: each tensor, each output row, or all targeted tensors together.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Mask file to write (.safetensors).")
@click.option("--codec", type=click.Choice(list(CODECS)), default="packbits", show_default=True,
              help="packbits: 1 bit/weight; zstd: entropy-coded (~0.49 bit/weight at 10%).")
@click.option("--dry-run", is_flag=True, help="List the matched parameters and exit.")
@target_options
@model_options
@seed_option
def command(model, kind, mask_ratio, granularity, out_path, codec, dry_run, targets, layers, exclude, seed, **model_kw):
    """Make a random or magnitude mask for MODEL (a folder, hub id or preset such as tiny-llama).

    K = round-half-up(mask_ratio * n) weights are masked per comparison group (at most n - 1);
    ties are masked by lower index first, so the result is exact and deterministic.

    \b
    Example:
      mftlab baseline tiny-llama --kind magnitude --mask-ratio 0.1 --layers 0-1 --out l1.safetensors
    """
    from mftlab.baselines import baseline_mask
    from mftlab.maskfile import file_bits_per_param, save_mask
    from mftlab.selection import check_ratio
    from mftlab.targeting import resolve_targets

    check_ratio(mask_ratio)
    spec = target_spec_from(targets, layers, exclude)
    if not dry_run and not out_path:
        raise click.UsageError("--out is required (or pass --dry-run)")
    if out_path and not out_path.endswith(".safetensors"):
        raise ConfigError(f"--out '{out_path}' should end in .safetensors; masks are safetensors files")
    loaded = load_model_from(model, **model_kw)
    if dry_run:
        echo_targets(resolve_targets(loaded.model, spec))
        return
    mask, found = baseline_mask(loaded.model, kind, mask_ratio, spec, granularity, seed, base_name=model)
    save_mask(mask, out_path, codec=codec)
    click.echo(f"wrote {out_path}: {kind} mask over {len(found)} tensors, {mask.total:,} weights, "
               f"{mask.total - mask.total_kept:,} masked ({mask.mask_ratio:.4%}), "
               f"{file_bits_per_param(out_path, mask):.3f} bits/weight")

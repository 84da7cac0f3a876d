"""`mftlab convert`: import a legacy dense .pt mask as a v1 mask file."""

import click

from mftlab.cli.options import codec_option, load_model_from, model_options


@click.command("convert")
@click.argument("legacy_path", metavar="LEGACY.pt")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="v1 mask file to write.")
@click.option("--model", default=None, help="Base model: resolves names and records fingerprints (recommended).")
@codec_option
@model_options
def command(legacy_path, out_path, model, codec, **model_kw):
    """Convert a .pt file of dense 0/1 tensors (keyed by module or parameter name; 1 = kept), as
    exported by the paper's public code, into a bit-packed v1 mask. Read with weights_only=True.

    \b
    Example:
      mftlab convert mask_dense.pt --model ./fft-model --out mask.safetensors
    """
    from mftlab.mask.legacy import convert_legacy
    from mftlab.mask.maskfile import check_mask_out, save_mask
    from mftlab.models.loading import named_weights

    check_mask_out(out_path)
    weights = named_weights(load_model_from(model, **model_kw).model) if model else None
    mask = convert_legacy(legacy_path, weights, base_name=model or "")
    save_mask(mask, out_path, codec=codec)
    note = "" if model else " (no --model: fingerprints not recorded)"
    click.echo(f"wrote {out_path}: {len(mask.names)} tensors, {mask.mask_ratio:.4%} masked{note}")

"""`mftlab inspect`: what a mask file holds, and whether it fits a model."""

import json

import click

from mftlab.cli.options import force_option, load_model_from, model_options


@click.command("inspect")
@click.argument("mask_path", metavar="MASK")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--model", default=None, help="Also check the mask's fingerprints against this model.")
@force_option
@model_options
def command(mask_path, as_json, model, force, **model_kw):
    """Show format, codec, base model, method, per-tensor masked fraction and bits per weight.

    \b
    Example:
      mftlab inspect mask.safetensors --model tiny-llama
    """
    from mftlab.mask.inspection import summarize
    from mftlab.mask.maskfile import load_mask
    from mftlab.models.loading import named_weights

    mask = load_mask(mask_path)
    summary = summarize(mask, mask_path)
    if model is not None:
        weights = named_weights(load_model_from(model, **model_kw).model)
        summary.mismatched = mask.check_fits(weights, force=force)
        summary.fingerprint_check = f"forced: {len(summary.mismatched)} differ" if summary.mismatched else "ok"
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
        return
    click.echo(
        f"{mask_path}: mftlab mask v{summary.format_version}, codec {summary.codec}, "
        f"written by mftlab {summary.mftlab_version}"
    )
    click.echo(
        f"base model: {summary.base_model.get('name_or_path', '?')}  "
        f"fingerprint {summary.base_model.get('fingerprint', 'none')}"
    )
    method = summary.method
    click.echo(
        "method: " + ", ".join(f"{k}={method[k]}" for k in ("name", "mask_ratio", "selection", "seed") if k in method)
    )
    width = max(len(t.name) for t in summary.tensors)
    for t in summary.tensors:
        click.echo(f"  {t.name:<{width}}  {str(t.shape):>14}  masked {t.masked_fraction:7.3%}")
    click.echo(
        f"total: {len(summary.tensors)} tensors, {summary.total:,} weights, {summary.masked:,} masked "
        f"({summary.mask_ratio:.4%}); {summary.file_bytes:,} bytes = {summary.bits_per_param:.3f} bits/weight"
    )
    if summary.fingerprint_check:
        click.echo(f"fingerprints vs {model}: {summary.fingerprint_check}")

"""`mftlab apply`: write the model with its mask applied as an ordinary Hugging Face folder."""

import click

from mftlab.cli.options import device_option, force_option, model_options


@click.command("apply")
@click.argument("model")
@click.argument("mask_path", metavar="[MASK]", required=False)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False), help="New folder for the merged model."
)
@force_option
@model_options
@device_option
def command(model, mask_path, out_dir, force, dtype, gguf_file, trust_remote_code, device):
    """Zero MODEL's masked weights and save it to --out, loadable by plain transformers, vLLM or lm-eval.
    Without MASK, MODEL is written as it is (e.g. a GGUF file as an ordinary safetensors folder).

    A local folder of safetensors shards is rewritten one shard at a time (peak memory about
    one shard); anything else is loaded once (on --device), masked in place and saved.

    \b
    Example:
      mftlab apply ./fft-model mask.safetensors --out ./mft-model
      mftlab apply ./gguf-folder --gguf-file model.gguf --out ./model
    """
    from mftlab.cli.progress_lines import callback
    from mftlab.files.folder_lock import hold_output
    from mftlab.mask.maskfile import load_mask
    from mftlab.mft.apply import write_merged
    from mftlab.models.device import resolve_device

    where = resolve_device(device)
    click.get_current_context().with_resource(hold_output(out_dir))  # two applies to one --out: one is refused
    mask = load_mask(mask_path) if mask_path is not None else None
    mismatched = write_merged(
        model,
        mask,
        out_dir,
        force=force,
        dtype=dtype,
        gguf_file=gguf_file,
        trust_remote_code=trust_remote_code,
        device=where,
        progress=callback("apply", "shard"),
    )
    if mismatched:
        click.echo(
            f"warning: {len(mismatched)} tensors differ from the mask's base; applied anyway (--force)", err=True
        )
    if mask is None:
        click.echo(f"wrote {out_dir}: {model} as an ordinary safetensors model folder")
        return
    click.echo(
        f"wrote {out_dir}: {model} with {mask.total - mask.total_kept:,} of {mask.total:,} targeted weights masked"
    )

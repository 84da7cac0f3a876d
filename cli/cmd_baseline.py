"""`mftlab baseline`: random, magnitude (L1), Wanda and SNIP masks without training."""

import click

from mftlab.cli.options import echo_targets, load_model_from, model_options, seed_option, target_options, target_spec_from
from mftlab.codecs import CODECS
from mftlab.errors import ConfigError
from mftlab.selection import GRANULARITIES


@click.command("baseline")
@click.argument("model")
@click.option("--kind", type=click.Choice(["random", "magnitude", "wanda", "snip"]), required=True,
              help="random: seeded uniform choice; magnitude: smallest |w| (the paper's L1 mask); wanda: smallest "
                   "|w| * input-feature norm; snip: smallest |w * dL/dw| (wanda and snip need --data).")
@click.option("--mask-ratio", type=float, default=0.1, show_default=True, help="Fraction of targeted weights to mask.")
@click.option("--granularity", type=click.Choice(list(GRANULARITIES)), default=None,
              help="Comparison group: each tensor, each output row, or all targeted tensors together "
                   "[default: row for wanda (the paper's), tensor otherwise].")
@click.option("--data", default=None, help="Calibration data for wanda / snip (.jsonl/.json/.parquet/.csv, e.g. the training data).")
@click.option("--max-tokens", type=int, default=16384, show_default=True,
              help="Calibration tokens to use (examples in file order; the last one is cut to fit).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Calibration examples per batch.")
@click.option("--max-seq-len", type=int, default=512, show_default=True, help="Tokens per calibration example.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Mask file to write (.safetensors).")
@click.option("--codec", type=click.Choice(list(CODECS)), default="packbits", show_default=True,
              help="packbits: 1 bit/weight; zstd: entropy-coded (~0.49 bit/weight at 10%).")
@click.option("--dry-run", is_flag=True, help="List the matched parameters and exit.")
@target_options
@model_options
@seed_option
def command(model, kind, mask_ratio, granularity, data, max_tokens, batch_size, max_seq_len, out_path, codec, dry_run,
            targets, layers, exclude, seed, **model_kw):
    """Make a random, magnitude, Wanda or SNIP mask for MODEL (a folder, hub id or preset such as tiny-llama).

    K = round-half-up(mask_ratio * n) weights are masked per comparison group (at most n - 1);
    ties are masked by lower index first, so the result is exact and deterministic. Wanda and
    SNIP read --max-tokens tokens of --data; the mask's metadata records them (fingerprint).

    \b
    Example:
      mftlab baseline tiny-llama --kind magnitude --mask-ratio 0.1 --layers 0-1 --out l1.safetensors
      mftlab baseline ./fft-model --kind wanda --data train.jsonl --max-tokens 8192 --out wanda.safetensors
    """
    from mftlab.baselines import DATA_KINDS, baseline_mask
    from mftlab.calibration import CalibrationConfig, load_calibration
    from mftlab.maskfile import file_bits_per_param, save_mask
    from mftlab.selection import check_ratio
    from mftlab.targeting import resolve_targets

    check_ratio(mask_ratio)
    if kind in DATA_KINDS and not data:
        raise ConfigError(f"--kind {kind} needs calibration data: pass --data FILE (e.g. the training data) "
                          "and optionally --max-tokens N")
    calib_config = CalibrationConfig(data, max_tokens, batch_size, max_seq_len) if kind in DATA_KINDS else None
    spec = target_spec_from(targets, layers, exclude)
    if not dry_run and not out_path:
        raise click.UsageError("--out is required (or pass --dry-run)")
    if out_path and not out_path.endswith(".safetensors"):
        raise ConfigError(f"--out '{out_path}' should end in .safetensors; masks are safetensors files")
    loaded = load_model_from(model, **model_kw)
    if dry_run:
        echo_targets(resolve_targets(loaded.model, spec))
        return
    resolve_targets(loaded.model, spec)  # a targeting mistake is reported before calibration runs
    calibration = load_calibration(calib_config, loaded.tokenizer) if calib_config else None
    mask, found = baseline_mask(loaded.model, kind, mask_ratio, spec, granularity, seed, base_name=model,
                                calibration=calibration)
    save_mask(mask, out_path, codec=codec)
    if calibration is not None:
        click.echo(f"calibrated on {calibration.tokens:,} tokens ({calibration.label_tokens:,} answer tokens) "
                   f"in {calibration.examples} examples, {len(calibration.batches)} batches")
    click.echo(f"wrote {out_path}: {kind} mask over {len(found)} tensors, {mask.total:,} weights, "
               f"{mask.total - mask.total_kept:,} masked ({mask.mask_ratio:.4%}), "
               f"{file_bits_per_param(out_path, mask):.3f} bits/weight")

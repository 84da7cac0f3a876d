"""`mftlab baseline`: random, magnitude (L1), Wanda and SNIP masks without training."""

import json

import click

from mftlab.cli.options import (
    codec_option,
    device_option,
    echo_targets,
    load_model_from,
    mask_ratio_option,
    model_options,
    option_for,
    seed_option,
    target_options,
    target_spec_from,
)
from mftlab.mft.baseline_run import BaselineConfig, DrawLosses, DrawOverlap, WrittenMask
from mftlab.mft.baselines import BASELINE_KINDS
from mftlab.mft.calibration import Calibration, CalibrationConfig
from mftlab.mft.selection import GRANULARITIES


@click.command("baseline")
@click.argument("model")
@click.option(
    "--kind",
    type=click.Choice(list(BASELINE_KINDS)),
    required=True,
    help="random: seeded uniform choice; magnitude: smallest |w| (the paper's L1 mask); wanda: smallest "
    "|w| * input-feature norm; snip: smallest |w * dL/dw| (wanda and snip need --data).",
)
@mask_ratio_option
@click.option(
    "--granularity",
    type=click.Choice(list(GRANULARITIES)),
    default=None,
    help="Comparison group: each tensor, each output row, or all targeted tensors together "
    "[default: row for wanda (the paper's), tensor otherwise].",
)
@option_for(CalibrationConfig, "data")
@option_for(CalibrationConfig, "max_tokens")
@option_for(CalibrationConfig, "batch_size")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Mask file to write (.safetensors).")
@codec_option
@click.option(
    "--seeds",
    "n_seeds",
    type=int,
    default=None,
    help="random: number of draws, seeds --seed, --seed+1, ... [default: 3]; the first goes to --out, the "
    "others beside it as <stem>.seed<S>.safetensors. magnitude, wanda and snip masks do not depend on a seed.",
)
@click.option("--eval-data", default=None, help="Score every draw on this (validation) data: loss mean ± std.")
@option_for(CalibrationConfig, "max_seq_len", note="Also of --eval-data.")
@click.option("--dry-run", is_flag=True, help="List the matched parameters and exit.")
@click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print what was written (and peak memory) as JSON."
)
@target_options
@model_options
@device_option
@seed_option
def command(model, *, out_path, dry_run, as_json, targets, layers, exclude, device, **options):
    """Make a random, magnitude, Wanda or SNIP mask for MODEL (a folder, hub id or preset such as tiny-llama).

    K = round-half-up(mask_ratio * n) weights are masked per comparison group (at most n - 1);
    ties are masked by lower index first, so the result is exact and deterministic. Wanda and
    SNIP read --max-tokens tokens of --data; the mask's metadata records them (fingerprint).

    A random mask is one draw of many: by default three seeds are drawn (--seeds), and with
    --eval-data each draw is scored, so the baseline is a mean ± std rather than one lucky
    or unlucky draw.

    \b
    Example:
      mftlab baseline tiny-llama --kind magnitude --mask-ratio 0.1 --layers 0-1 --out l1.safetensors
      mftlab baseline ft/best --kind random --seeds 3 --layers 4-7 --eval-data val.jsonl --out random.safetensors
      mftlab baseline ./fft-model --kind wanda --data train.jsonl --max-tokens 8192 --out wanda.safetensors

    Wanda's and SNIP's passes (SNIP's backward too) run on --device; with --json the summary is
    printed as JSON, with the peak memory (GiB) of the process.
    """
    from mftlab.cli.progress_lines import callback
    from mftlab.mask.maskfile import check_mask_out
    from mftlab.mft.baseline_run import make_baselines
    from mftlab.mft.targeting import resolve_targets
    from mftlab.models.device import resolve_device
    from mftlab.training.peak_memory import peak_memory

    config = BaselineConfig.from_options(options)
    spec = target_spec_from(targets, layers, exclude)
    if not dry_run and not out_path:
        raise click.UsageError("--out is required (or pass --dry-run)")
    check_mask_out(out_path)
    where = resolve_device(device)
    loaded = load_model_from(model, device=where, **options)  # takes the model options, leaves the rest
    if dry_run:
        echo_targets(resolve_targets(loaded.model, spec))
        return
    result = make_baselines(
        loaded,
        config,
        spec,
        out_path=out_path,
        base_name=model,
        device=where,
        progress=callback(f"{config.kind} calibration", "token"),
        report=None if as_json else lambda piece: click.echo(_line(piece, config)),
    )
    if as_json:
        click.echo(json.dumps({**result.to_dict(), **peak_memory(where)}, indent=2))


def _line(piece, config: BaselineConfig) -> str:
    """The line printed for each piece of a baseline run as it is done (mftlab.mft.baseline_run)."""
    if isinstance(piece, Calibration):
        return (
            f"calibrated on {piece.tokens:,} tokens ({piece.label_tokens:,} answer tokens) "
            f"in {piece.examples} examples, {len(piece.batches)} batches"
        )
    if isinstance(piece, WrittenMask):
        return (
            f"wrote {piece.path}: {config.kind} mask{f' (seed {piece.seed})' if config.n_seeds > 1 else ''} over "
            f"{piece.tensors} tensors, {piece.weights:,} weights, {piece.masked:,} masked ({piece.mask_ratio:.4%}), "
            f"{piece.bits_per_weight:.3f} bits/weight"
        )
    if isinstance(piece, DrawOverlap):
        return (
            f"{len(piece.seeds)} draws (seeds {piece.seeds[0]}-{piece.seeds[-1]}): two draws share "
            f"{piece.shared_masked_fraction:.1%} of their masked weights on average (independent draws: about "
            f"{config.mask_ratio:.0%})"
        )
    assert isinstance(piece, DrawLosses), piece
    return (
        f"loss on {piece.data}: {piece.mean:.4f} ± {piece.std:.4f} over {len(piece.losses)} draw(s) "
        f"(min {min(piece.losses):.4f}, max {max(piece.losses):.4f})"
    )

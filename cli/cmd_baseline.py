"""`mftlab baseline`: random, magnitude (L1), Wanda and SNIP masks without training."""

import json
import statistics

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
from mftlab.errors import ConfigError
from mftlab.mft.baselines import BASELINE_KINDS
from mftlab.mft.calibration import CalibrationConfig
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
def command(
    model,
    kind,
    mask_ratio,
    granularity,
    data,
    max_tokens,
    batch_size,
    out_path,
    codec,
    n_seeds,
    eval_data,
    max_seq_len,
    dry_run,
    as_json,
    targets,
    layers,
    exclude,
    device,
    seed,
    **model_kw,
):
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
    from mftlab.mask.maskfile import file_bits_per_param, save_mask
    from mftlab.mft.baselines import (
        DATA_KINDS,
        baseline_mask,
        default_granularity,
        draw_paths,
        evaluate_draws,
        shared_masked_fraction,
    )
    from mftlab.mft.calibration import CalibrationConfig, load_calibration
    from mftlab.mft.selection import check_ratio
    from mftlab.mft.targeting import resolve_targets
    from mftlab.models.device import resolve_device

    check_ratio(mask_ratio)
    if kind != "random" and n_seeds not in (None, 1):
        raise ConfigError(f"--seeds {n_seeds}: {kind} masks do not depend on a seed; leave --seeds out")
    n_seeds = n_seeds if n_seeds is not None else (3 if kind == "random" else 1)
    if not 1 <= n_seeds <= 100:
        raise ConfigError(f"--seeds {n_seeds} is outside 1..100; use e.g. 3 for a mean and a spread")
    if kind in DATA_KINDS and not data:
        raise ConfigError(
            f"--kind {kind} needs calibration data: pass --data FILE (e.g. the training data) "
            "and optionally --max-tokens N"
        )
    calib_config = CalibrationConfig(data, max_tokens, batch_size, max_seq_len) if kind in DATA_KINDS else None
    spec = target_spec_from(targets, layers, exclude)
    if not dry_run and not out_path:
        raise click.UsageError("--out is required (or pass --dry-run)")
    if out_path and not out_path.endswith(".safetensors"):
        raise ConfigError(f"--out '{out_path}' should end in .safetensors; masks are safetensors files")
    where = resolve_device(device)
    loaded = load_model_from(model, device=where, **model_kw)
    if dry_run:
        echo_targets(resolve_targets(loaded.model, spec))
        return
    resolve_targets(loaded.model, spec)  # a targeting mistake is reported before calibration runs
    calibration = load_calibration(calib_config, loaded.tokenizer, where) if calib_config else None
    say = (lambda text: None) if as_json else click.echo
    if calibration is not None:
        say(
            f"calibrated on {calibration.tokens:,} tokens ({calibration.label_tokens:,} answer tokens) "
            f"in {calibration.examples} examples, {len(calibration.batches)} batches"
        )
    from mftlab.cli.progress_lines import callback

    seeds = list(range(seed, seed + n_seeds))
    masks, written = [], []
    for s, path in zip(seeds, draw_paths(out_path, seeds)):
        mask, found = baseline_mask(
            loaded.model,
            kind,
            mask_ratio,
            spec,
            granularity,
            s,
            base_name=model,
            calibration=calibration,
            progress=callback(f"{kind} calibration", "token") if calibration is not None else None,
        )
        save_mask(mask, path, codec=codec)
        masks.append(mask)
        bits = file_bits_per_param(path, mask)
        written.append(
            {
                "path": path,
                "seed": s,
                "tensors": len(found),
                "weights": mask.total,
                "masked": mask.total - mask.total_kept,
                "mask_ratio": mask.mask_ratio,
                "bits_per_weight": bits,
            }
        )
        say(
            f"wrote {path}: {kind} mask{f' (seed {s})' if n_seeds > 1 else ''} over {len(found)} tensors, "
            f"{mask.total:,} weights, {mask.total - mask.total_kept:,} masked ({mask.mask_ratio:.4%}), "
            f"{bits:.3f} bits/weight"
        )
    summary = {
        "model": model,
        "kind": kind,
        "granularity": granularity or default_granularity(kind),
        "device": str(where),
        "masks": written,
        "calibration": calibration.to_dict() if calibration is not None else None,
    }
    if n_seeds > 1:
        shared = [shared_masked_fraction(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :]]
        summary["shared_masked_fraction"] = statistics.fmean(shared)
        say(
            f"{n_seeds} draws (seeds {seeds[0]}-{seeds[-1]}): two draws share {statistics.fmean(shared):.1%} of "
            f"their masked weights on average (independent draws: about {mask_ratio:.0%})"
        )
    if eval_data:
        from mftlab.training.data import load_examples

        examples, _ = load_examples(eval_data, loaded.tokenizer, max_seq_len)
        losses = evaluate_draws(loaded.model, loaded.tokenizer, masks, examples)
        spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
        summary["eval"] = {"data": eval_data, "losses": losses, "mean": statistics.fmean(losses), "std": spread}
        say(
            f"loss on {eval_data}: {statistics.fmean(losses):.4f} ± {spread:.4f} over {len(losses)} draw(s) "
            f"(min {min(losses):.4f}, max {max(losses):.4f})"
        )
    if as_json:
        from mftlab.training.peak_memory import peak_memory

        click.echo(json.dumps({**summary, **peak_memory(where)}, indent=2))

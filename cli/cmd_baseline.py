"""`mftlab baseline`: random and magnitude (L1) masks without training."""

import statistics

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
@click.option("--seeds", "n_seeds", type=int, default=None,
              help="random: number of draws, seeds --seed, --seed+1, ... [default: 3]; the first goes to --out, the "
                   "others beside it as <stem>.seed<S>.safetensors. magnitude masks do not depend on a seed.")
@click.option("--eval-data", default=None, help="Score every draw on this (validation) data: loss mean ± std.")
@click.option("--max-seq-len", type=int, default=512, show_default=True, help="--eval-data: tokens per example.")
@click.option("--dry-run", is_flag=True, help="List the matched parameters and exit.")
@target_options
@model_options
@seed_option
def command(model, kind, mask_ratio, granularity, out_path, codec, n_seeds, eval_data, max_seq_len, dry_run, targets,
            layers, exclude, seed, **model_kw):
    """Make a random or magnitude mask for MODEL (a folder, hub id or preset such as tiny-llama).

    K = round-half-up(mask_ratio * n) weights are masked per comparison group (at most n - 1);
    ties are masked by lower index first, so the result is exact and deterministic.

    A random mask is one draw of many: by default three seeds are drawn (--seeds), and with
    --eval-data each draw is scored, so the baseline is a mean ± std rather than one lucky
    or unlucky draw.

    \b
    Example:
      mftlab baseline tiny-llama --kind magnitude --mask-ratio 0.1 --layers 0-1 --out l1.safetensors
      mftlab baseline ft/best --kind random --seeds 3 --layers 4-7 --eval-data val.jsonl --out random.safetensors
    """
    from mftlab.baselines import baseline_mask, draw_paths, evaluate_draws, shared_masked_fraction
    from mftlab.maskfile import file_bits_per_param, save_mask
    from mftlab.selection import check_ratio
    from mftlab.targeting import resolve_targets

    check_ratio(mask_ratio)
    if kind == "magnitude" and n_seeds not in (None, 1):
        raise ConfigError(f"--seeds {n_seeds}: magnitude masks do not depend on a seed; leave --seeds out")
    n_seeds = n_seeds if n_seeds is not None else (3 if kind == "random" else 1)
    if not 1 <= n_seeds <= 100:
        raise ConfigError(f"--seeds {n_seeds} is outside 1..100; use e.g. 3 for a mean and a spread")
    spec = target_spec_from(targets, layers, exclude)
    if not dry_run and not out_path:
        raise click.UsageError("--out is required (or pass --dry-run)")
    if out_path and not out_path.endswith(".safetensors"):
        raise ConfigError(f"--out '{out_path}' should end in .safetensors; masks are safetensors files")
    loaded = load_model_from(model, **model_kw)
    if dry_run:
        echo_targets(resolve_targets(loaded.model, spec))
        return
    seeds = list(range(seed, seed + n_seeds))
    masks = []
    for s, path in zip(seeds, draw_paths(out_path, seeds)):
        mask, found = baseline_mask(loaded.model, kind, mask_ratio, spec, granularity, s, base_name=model)
        save_mask(mask, path, codec=codec)
        masks.append(mask)
        click.echo(f"wrote {path}: {kind} mask{f' (seed {s})' if n_seeds > 1 else ''} over {len(found)} tensors, "
                   f"{mask.total:,} weights, {mask.total - mask.total_kept:,} masked ({mask.mask_ratio:.4%}), "
                   f"{file_bits_per_param(path, mask):.3f} bits/weight")
    if n_seeds > 1:
        shared = [shared_masked_fraction(a, b) for i, a in enumerate(masks) for b in masks[i + 1:]]
        click.echo(f"{n_seeds} draws (seeds {seeds[0]}-{seeds[-1]}): two draws share {statistics.fmean(shared):.1%} of "
                   f"their masked weights on average (independent draws: about {mask_ratio:.0%})")
    if eval_data:
        from mftlab.data import load_examples

        examples, _ = load_examples(eval_data, loaded.tokenizer, max_seq_len)
        losses = evaluate_draws(loaded.model, loaded.tokenizer, masks, examples)
        spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
        click.echo(f"loss on {eval_data}: {statistics.fmean(losses):.4f} ± {spread:.4f} over {len(losses)} draw(s) "
                   f"(min {min(losses):.4f}, max {max(losses):.4f})")

"""`mftlab demo`: the paper's protocol end to end on the built-in tiny benchmark, with a report."""

import click

from mftlab.cli.options import floats, option_for, options_for, threads_option
from mftlab.recipes.demo import DemoConfig


@click.command("demo")
@option_for(DemoConfig, "out", default="demo-out", type=click.Path(file_okay=False))
@options_for(DemoConfig, "seed", "seeds", "quick", "layers", "mask_ratio", "mft_inits", "mft_score_lrs", "random_seeds")
@threads_option
def command(out, seed, seeds, quick, layers, mask_ratio, mft_inits, mft_score_lrs, random_seeds, threads):
    """Run backbone -> FFT (upper bound) -> continued FFT -> MFT (a small grid of variants, the best on
    validation kept) -> random / magnitude / Wanda / SNIP masks (-> LoRA when peft is installed) on three
    tiny domains (math, code, instruct), then tables, mask statistics, overlap, MFT vs pruning criteria,
    dynamics, loss landscapes and training curves, summarised in
    OUT/report.md and OUT/index.html. Offline; deterministic for a given seed. The demo is `mftlab protocol`
    with the built-in benchmark's config, written to OUT/protocol.yaml (copy it for your own model and data).

    \b
    Example:
      mftlab demo --out demo-out            # about 3-5 minutes on 2 CPU cores
      mftlab demo --out ci-demo --quick     # about a minute
    """
    from mftlab.cli.cmd_protocol import run_and_report
    from mftlab.recipes.demo import run_demo

    inits = tuple(x.strip() for x in mft_inits.split(",") if x.strip())
    config = DemoConfig(
        out=out,
        seed=seed,
        seeds=seeds,
        quick=quick,
        layers=layers,
        mask_ratio=mask_ratio,
        mft_inits=inits,
        mft_score_lrs=floats(mft_score_lrs, "mft-score-lrs"),
        random_seeds=random_seeds,
    )
    run_and_report(lambda progress: run_demo(config, progress), out, threads)

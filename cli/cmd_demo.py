"""`mftlab demo`: the paper's protocol end to end on the built-in tiny benchmark, with a report."""

import click


@click.command("demo")
@click.option("--out", default="demo-out", show_default=True, type=click.Path(file_okay=False),
              help="Folder for every run, result, figure and the report (re-running reuses finished steps).")
@click.option("--seed", type=int, default=0, show_default=True, help="First seed.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Number of seeds (mean ± std in the tables).")
@click.option("--quick", is_flag=True, help="Smaller data, fewer steps and a coarser landscape (about a minute).")
@click.option("--layers", default="2-3", show_default=True, help="The local layer group MFT trains.")
@click.option("--mask-ratio", type=float, default=0.1, show_default=True, help="Fraction of targeted weights masked.")
@click.option("--mft-inits", default="random,magnitude", show_default=True,
              help="MFT variants: score initialisations (x --mft-score-lrs); the best on validation is MFT.")
@click.option("--mft-score-lrs", default="1e-3,1e-2", show_default=True,
              help="MFT variants: score learning rates (x --mft-inits).")
@click.option("--random-seeds", type=int, default=3, show_default=True,
              help="Draws of the random-mask baseline per domain and seed (mean ± std in the tables).")
@click.option("--threads", type=int, default=1, show_default=True,
              help="CPU threads for torch. The demo's models are so small that one thread is fastest; more "
                   "threads only help bigger models and hurt badly when other processes share the cores.")
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
    from mftlab.cli.cmd_sweep import _floats
    from mftlab.recipes.demo import DemoConfig, run_demo

    inits = tuple(x.strip() for x in mft_inits.split(",") if x.strip())
    config = DemoConfig(out=out, seed=seed, seeds=seeds, quick=quick, layers=layers, mask_ratio=mask_ratio,
                        mft_inits=inits, mft_score_lrs=_floats(mft_score_lrs, "mft-score-lrs"), random_seeds=random_seeds)
    run_and_report(lambda progress: run_demo(config, progress), out, threads)

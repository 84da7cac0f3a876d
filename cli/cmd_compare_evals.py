"""`mftlab compare-evals`: is B's difference from A on the same test examples real?"""

import json

import click

from mftlab.cli.options import no_figures_option
from mftlab.significance.paired import METRICS


@click.command("compare-evals")
@click.argument("files", metavar="A.jsonl B.jsonl", nargs=-1, required=True)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    default="exact_match",
    show_default=True,
    help="exact_match: each example's `correct` (exact McNemar test); loss: its mean answer-token loss "
    "(paired permutation test).",
)
@click.option(
    "--pairs",
    is_flag=True,
    default=False,
    help="FILES are several pairs A1 B1 A2 B2 ...: each B - A, with Holm's correction over the pairs.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and permutations.")
@click.option("--out", default=None, type=click.Path(), help="Also write significance.json / .csv and a forest plot.")
@no_figures_option
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the numbers as JSON.")
def command(files, metric, pairs, seed, out, no_figures, as_json):
    """The paired difference B - A over the same test examples (per-example files of `mftlab eval
    --per-example`), with its 95% bootstrap confidence interval (BCa, 10,000 resamples, seeded) and a
    paired test: exact McNemar for exact match, a permutation test for loss.

    \b
    Example:
      mftlab eval ./fft-model --data test.jsonl --per-example fft.jsonl
      mftlab eval ./fft-model --mask mft/mask.safetensors --data test.jsonl --per-example mft.jsonl
      mftlab compare-evals fft.jsonl mft.jsonl
      mftlab compare-evals fft.jsonl mft.jsonl --metric loss --json
      mftlab compare-evals fft-math.jsonl mft-math.jsonl fft-code.jsonl mft-code.jsonl --pairs --out sig

    The interval covers the test-set noise of one trained model each; for the noise of training
    too, compare several seeds (`mftlab protocol` with seeds > 1 does, with a two-level bootstrap).
    """
    from mftlab.significance.api import compare_evals

    if not pairs and len(files) != 2:
        raise click.UsageError(f"give two per-example files A B (got {len(files)}); several pairs need --pairs")
    if pairs and (len(files) < 2 or len(files) % 2):
        raise click.UsageError(f"--pairs needs files in pairs A1 B1 A2 B2 ... (got {len(files)})")
    if out is not None:
        from mftlab.cli.options import own_folder

        click.get_current_context().with_resource(own_folder(out, clean="top"))
    couples = list(zip(files[0::2], files[1::2]))
    result = compare_evals(pairs=couples, metric=metric, seed=seed)
    written = []
    if out is not None:
        written = result.save(out)
        if not no_figures:
            from mftlab.figures import significance_figures

            written += significance_figures.render(out)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    for line in result.lines():
        click.echo(line)
    if written:
        click.echo(f"wrote {len(written)} files to {out}")

"""`mftlab compare-masks`: overlap between masks (pairwise and k-of-N, or one reference against many),
computed on packed bits."""

import os

import click

from mftlab.cli.options import device_option, load_model_from, model_options, no_figures_option
from mftlab.errors import MftlabError


@click.command("compare-masks")
@click.argument("mask_paths", metavar="MASK...", nargs=-1, required=True)
@click.option("--labels", default=None, help="Comma-separated names for the masks, in order (default: file names).")
@click.option("--out", required=True, type=click.Path(), help="Folder for overlap.json, overlap.csv and the figures.")
@click.option(
    "--force",
    is_flag=True,
    default=False,
    help="Compare masks over different tensors or bases anyway (only the shared tensors).",
)
@no_figures_option
@click.option(
    "--reference",
    default=None,
    help="One-vs-many: overlap of this mask (e.g. MFT's) with each MASK, per layer and projection, "
    "with lift over chance.",
)
@click.option(
    "--scores",
    "scores_run",
    default=None,
    help="With --reference: an MFT training run folder; its latest checkpoint's scores are rank-correlated "
    "(Spearman) with each criterion's scores.",
)
@click.option(
    "--model",
    default=None,
    help="With --scores: the base model, to recompute the scores of magnitude, wanda and snip masks.",
)
@click.option(
    "--data", default=None, help="With --scores: the calibration data of wanda / snip masks (checked by fingerprint)."
)
@model_options
@device_option
def command(mask_paths, labels, out, force, no_figures, reference, scores_run, model, data, device, **model_kw):
    """Jaccard, Dice, Hamming, shared masked weights, lift over independent masks and a
    hypergeometric p-value for every pair (per tensor, layer, projection and overall), and
    k-of-N consensus counts. Works on the packed bytes: memory stays near the masks' file size.

    \b
    With --reference, the reference mask (MFT's) is compared with each MASK (pruning criteria):
    overlap, lift and the share of the reference's masked weights each one masks too.

    \b
    Example:
      mftlab compare-masks math.safetensors code.safetensors chat.safetensors \\
          --labels math,code,chat --out results/overlap
      mftlab compare-masks --reference run/mask.safetensors wanda.safetensors snip.safetensors \\
          --scores run --model ./fft-model --data train.jsonl --out results/criteria
    """
    from mftlab.analysis.overlap import compare_masks
    from mftlab.cli.progress_lines import callback
    from mftlab.files.folder_lock import hold_folder
    from mftlab.models.device import resolve_device

    if os.path.exists(out) and not os.path.isdir(out):
        raise MftlabError(f"--out '{out}' is a file; pass a folder for the results")
    where = resolve_device(device)  # where --model recomputes the criteria's scores (Wanda / SNIP passes)
    click.get_current_context().with_resource(hold_folder(out, clean="top"))  # one writer at a time
    names = [x.strip() for x in labels.split(",")] if labels is not None else None
    if names is not None and any(not x for x in names):
        raise MftlabError(f"--labels '{labels}' has an empty name; write e.g. --labels math,code")
    if reference is None and (scores_run or model or data):
        raise click.UsageError("--scores, --model and --data go with --reference")
    if reference is not None:
        return _compare_to_reference(
            reference,
            list(mask_paths),
            names,
            out,
            force=force,
            no_figures=no_figures,
            scores_run=scores_run,
            model=model,
            data=data,
            device=where,
            model_kw=model_kw,
        )
    result = compare_masks(list(mask_paths), names, force=force, progress=callback("compare-masks", "tensor"))

    written = result.save(out)
    if not no_figures:
        from mftlab.figures import overlap_figures

        written += overlap_figures.render(out)
    _print_pairs(result)
    click.echo(f"wrote {len(written)} files to {out}")


def _print_pairs(result) -> None:
    """The notes, each pair's overall overlap, and the k-of-N consensus counts."""
    for note in result.notes:
        click.echo(f"note: {note}")
    width = max(len(x) for x in result.labels)
    click.echo(f"{'a':<{width}}  {'b':<{width}}  {'Jaccard':>8}  {'lift':>7}  {'z':>9}  {'shared masked':>14}")
    for row in result.pairs:
        if row["level"] == "overall":
            lift = f"{row['lift']:.3f}" if row["lift"] is not None else "n/a"
            click.echo(
                f"{row['a']:<{width}}  {row['b']:<{width}}  {row['jaccard']:>8.4f}  {lift:>7}  "
                f"{row['z']:>9.1f}  {row['shared_masked']:>14,}"
            )
    exactly = result.consensus[-1]["exactly"]
    click.echo("masked by exactly k masks: " + ", ".join(f"k={k}: {c:,}" for k, c in enumerate(exactly) if k))


def _compare_to_reference(
    reference, mask_paths, names, out, *, force, no_figures, scores_run, model, data, device, model_kw
):
    from mftlab.analysis.criteria import run_scores
    from mftlab.analysis.reference_overlap import correlate_with_run, reference_overlap
    from mftlab.cli.progress_lines import callback

    if data and not model:
        raise MftlabError("--data (calibration data) needs --model too, to recompute the criteria's scores")
    if scores_run:
        run_scores(scores_run)  # a run without checkpoints is reported before any work
    result = reference_overlap(reference, mask_paths, names, force=force)
    if scores_run:
        loaded = load_model_from(model, device=device, **model_kw) if model else None
        correlate_with_run(
            result, mask_paths, scores_run, loaded, data=data, force=force, progress=callback("scores", "criterion")
        )

    written = result.save(out)
    if not no_figures:
        from mftlab.figures import criteria_figures

        written += criteria_figures.render(out)
    for note in result.notes:
        click.echo(f"note: {note}")
    width = max(len(x) for x in result.labels + ["mask"])
    click.echo(f"reference: {result.reference} ({reference})")
    click.echo(f"{'mask':<{width}}  {'shared':>8}  {'chance':>8}  {'lift':>7}  {'Spearman':>8}")
    for label in result.labels:
        row = result.row(label)
        fmt = lambda x, f: "n/a" if x is None else format(x, f)  # noqa: E731
        click.echo(
            f"{label:<{width}}  {fmt(row['fraction_of_reference'], '8.2%')}  {fmt(row['chance_fraction'], '8.2%')}"
            f"  {fmt(row['lift'], '7.3f')}  {fmt(row['spearman'], '8.3f')}"
        )
    click.echo(f"wrote {len(written)} files to {out}")

"""`mftlab compare-masks`: overlap between masks (pairwise and k-of-N), computed on packed bits."""

import os

import click

from mftlab.errors import MftlabError


@click.command("compare-masks")
@click.argument("mask_paths", metavar="MASK...", nargs=-1, required=True)
@click.option("--labels", default=None, help="Comma-separated names for the masks, in order (default: file names).")
@click.option("--out", required=True, type=click.Path(), help="Folder for overlap.json, overlap.csv and the figures.")
@click.option("--force", is_flag=True, default=False,
              help="Compare masks over different tensors or bases anyway (only the shared tensors).")
@click.option("--no-figures", is_flag=True, default=False, help="Write JSON and CSV only (redraw later with mftlab plot).")
def command(mask_paths, labels, out, force, no_figures):
    """Jaccard, Dice, Hamming, shared masked weights, lift over independent masks and a
    hypergeometric p-value for every pair (per tensor, layer, projection and overall), and
    k-of-N consensus counts. Works on the packed bytes: memory stays near the masks' file size.

    \b
    Example:
      mftlab compare-masks math.safetensors code.safetensors chat.safetensors \\
          --labels math,code,chat --out results/overlap
    """
    from mftlab.analysis.overlap import compare_masks
    from mftlab.analysis.results import ensure_dir, write_csv, write_json
    from mftlab.folder_lock import hold_folder

    if os.path.exists(out) and not os.path.isdir(out):
        raise MftlabError(f"--out '{out}' is a file; pass a folder for the results")
    click.get_current_context().with_resource(hold_folder(out, clean="top"))  # one writer at a time
    names = [x.strip() for x in labels.split(",")] if labels is not None else None
    if names is not None and any(not x for x in names):
        raise MftlabError(f"--labels '{labels}' has an empty name; write e.g. --labels math,code")
    result = compare_masks(list(mask_paths), names, force=force)

    ensure_dir(out)
    written = [write_json(os.path.join(out, "overlap.json"), result.to_dict()),
               write_csv(os.path.join(out, "overlap.csv"), result.csv_rows())]
    if not no_figures:
        from mftlab.figures import overlap_figures

        written += overlap_figures.render(out)

    for note in result.notes:
        click.echo(f"note: {note}")
    width = max(len(x) for x in result.labels)
    click.echo(f"{'a':<{width}}  {'b':<{width}}  {'Jaccard':>8}  {'lift':>7}  {'z':>9}  {'shared masked':>14}")
    for row in result.pairs:
        if row["level"] == "overall":
            lift = f"{row['lift']:.3f}" if row["lift"] is not None else "n/a"
            click.echo(f"{row['a']:<{width}}  {row['b']:<{width}}  {row['jaccard']:>8.4f}  {lift:>7}  "
                       f"{row['z']:>9.1f}  {row['shared_masked']:>14,}")
    exactly = result.consensus[-1]["exactly"]
    click.echo("masked by exactly k masks: " + ", ".join(f"k={k}: {c:,}" for k, c in enumerate(exactly) if k))
    click.echo(f"wrote {len(written)} files to {out}")

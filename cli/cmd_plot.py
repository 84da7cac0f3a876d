"""`mftlab plot DIR`: redraw all figures of a results folder from its saved JSON / npz."""

import os

import click

from mftlab.errors import MftlabError


@click.command("plot")
@click.argument("result_dir", type=click.Path(file_okay=False))
def command(result_dir):
    """Re-render every figure (PNG, PDF, HTML) under RESULT_DIR from saved results, without a model.

    \b
    Example:
      mftlab plot runs/overlap
    """
    from mftlab.figures.render import render_all, renderers
    from mftlab.folder_lock import hold_folder

    if not os.path.isdir(result_dir):
        raise MftlabError(f"results folder '{result_dir}' does not exist; pass the --out folder of an earlier command")
    click.get_current_context().with_resource(hold_folder(result_dir, clean="top"))  # not while its run writes
    written = render_all(result_dir)
    if not written:
        known = ", ".join(sorted(renderers())) or "none"
        raise MftlabError(f"no results found in '{result_dir}' (looked for: {known}); pass the --out folder of stats, compare-masks or landscape")
    for path in written:
        click.echo(path)

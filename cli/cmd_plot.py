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
    from mftlab.figures.render import plot
    from mftlab.files.folder_lock import hold_folder

    if not os.path.isdir(result_dir):
        raise MftlabError(f"results folder '{result_dir}' does not exist; pass the --out folder of an earlier command")
    click.get_current_context().with_resource(hold_folder(result_dir, clean="top"))  # not while its run writes
    written = plot(result_dir)
    for path in written:
        click.echo(path)

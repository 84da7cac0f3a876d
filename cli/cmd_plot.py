"""`mftlab plot DIR`: redraw all figures of a results folder from its saved JSON / npz."""

import click


@click.command("plot")
@click.argument("result_dir", type=click.Path(file_okay=False))
def command(result_dir):
    """Re-render every figure (PNG, PDF, HTML) under RESULT_DIR from saved results, without a model.

    \b
    Example:
      mftlab plot runs/overlap
    """
    from mftlab.figures.render import plot

    written = plot(result_dir)
    for path in written:
        click.echo(path)

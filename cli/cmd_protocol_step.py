"""`mftlab protocol-step SPEC.json` (hidden): one launched worker of a protocol's scoring or landscape step.

`mftlab protocol` writes SPEC.json into the step's folder and launches this under torchrun (the line
is in the folder's command.sh); every process takes its share of the step's work.
"""

import click


@click.command("protocol-step", hidden=True)
@click.argument("spec", type=click.Path(exists=True, dir_okay=False))
def command(spec):
    """Run one scoring or landscape step of `mftlab protocol` as SPEC (written by the protocol) describes it."""
    from mftlab.cli.progress_lines import Display
    from mftlab.recipes.step_runner import run_worker

    run_worker(spec, Display())  # launched with MFTLAB_PROGRESS=plain: the protocol passes the lines on

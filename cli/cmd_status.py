"""`mftlab status OUT`: where a run stands (protocol, demo, train, sweep or landscape), without disturbing it."""

import json
import time

import click


@click.command("status")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, default=False, help="Print the status as JSON.")
@click.option("--watch", is_flag=True, default=False, help="Refresh every few seconds until the run ends (Ctrl-C).")
@click.option(
    "--every", type=click.FloatRange(min=0.5), default=5.0, show_default=True, help="Seconds between refreshes."
)
def command(folder, as_json, watch, every):
    """Which steps of the run in FOLDER are done, which one is running (its pid, its progress) or was
    interrupted or failed (with its log), and the ETA. Reads the folder's files only: never takes the
    run's lock, so it works while the run goes on.

    \b
    Example:
      mftlab status protocol-out
      mftlab status protocol-out --watch
      mftlab status run --json
    """
    from mftlab.progress.status import folder_status, status_lines

    while True:
        status = folder_status(folder)
        if as_json:
            click.echo(json.dumps(status, indent=2))
        else:
            click.echo("\n".join(status_lines(status)))
        if not watch or status["state"] != "running":
            return
        time.sleep(every)
        if not as_json:
            click.echo("")

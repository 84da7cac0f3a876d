"""`mftlab protocol CONFIG.yaml`: the paper's protocol on any backbone and data, with a report."""

import os
import time

import click

from mftlab.cli.options import option_for, threads_option
from mftlab.errors import ConfigError
from mftlab.recipes.demo import DemoConfig


def run_and_report(run, out: str, threads: int) -> dict:
    """Hold `out`, run `run(progress)` (the protocol, or the demo that runs it) on `threads` CPU threads,
    then draw every figure and write the report. Shared by `mftlab protocol` and `mftlab demo`."""
    import torch

    from mftlab.cli.progress_lines import Display
    from mftlab.figures.report import render as render_report
    from mftlab.files.folder_lock import hold_folder
    from mftlab.progress.events import clock
    from mftlab.recipes.protocol import ProtocolProgress

    click.get_current_context().with_resource(hold_folder(out))  # one writer at a time, to the report
    if threads < 1:
        raise click.BadParameter(f"{threads} must be at least 1", param_hint="--threads")
    torch.set_num_threads(threads)
    started = time.perf_counter()

    steps = Display(indent="  ")  # progress inside the steps, on stderr

    def progress(event):
        if not isinstance(event, ProtocolProgress):
            return steps(event)
        left = f" (ETA {clock(event.eta_seconds)} for the run)" if event.eta_seconds is not None else ""
        click.echo(f"[{time.perf_counter() - started:6.1f}s] ({event.step}/{event.total}) {event.message}{left}")

    with torch.random.fork_rng(devices=[]):
        index = run(progress)
    click.echo(f"[{time.perf_counter() - started:6.1f}s] drawing figures and writing the report")
    written = render_report(out)
    click.echo(
        f"done in {time.perf_counter() - started:.1f}s: {os.path.join(out, 'report.md')}, "
        f"{os.path.join(out, 'index.html')} ({len(written)} files; {len(index['methods'])} methods x "
        f"{len(index['domains'])} domains)"
    )
    return index


@click.command("protocol")
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@option_for(DemoConfig, "out", default="protocol-out", type=click.Path(file_okay=False))  # the same run folder
@threads_option
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    default=None,
    help="Processes per step (overrides runtime.processes); > 1 launches each step with torchrun.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default=None,
    help="Where the steps compute (overrides runtime.device).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print every step with its command, memory and time plan; write OUT/plan.md; exit."
)
@click.option(
    "--force", is_flag=True, help="Run even when the plan says a step does not fit in runtime.gpu_memory_gib."
)
def command(config_file, out, threads, processes, device, dry_run, force):
    """Run the paper's protocol as CONFIG (YAML or JSON) describes it: a backbone (model folder, hub id
    or preset, optionally pre-trained first), domains each with train / validation / test files, the
    methods (backbone, fft, continued_fft, mft, random, magnitude, wanda, snip, lora), the layers and
    mask ratio MFT trains, seeds, MFT's grid (the best variant on validation is MFT), random-mask
    draws, training lengths and rates, the landscape, and where the steps run (`runtime`: processes,
    launcher, device, dtype, FFT sharding, gradient accumulation and checkpointing, the memory limit).
    Writes OUT/report.md and OUT/index.html with the same tables and figures as `mftlab demo`;
    relative paths in CONFIG are read from its folder. `mftlab demo` writes its own config to
    OUT/protocol.yaml: a complete example.

    Every step is planned first (config files only, no weights): a step whose peak memory per GPU
    exceeds runtime.gpu_memory_gib stops the run before it starts, unless --force.

    \b
    Example:
      mftlab protocol my-protocol.yaml --out my-protocol-out
      mftlab protocol my-protocol.yaml --dry-run          # the plan, in seconds
      mftlab protocol my-protocol.yaml --processes 2 --device cpu   # a 2-process rehearsal
      mftlab protocol demo-out/protocol.yaml --out rerun   # the demo's tables, bit for bit
    """
    from mftlab.recipes.protocol import run_protocol, runs_lora
    from mftlab.recipes.protocol_config import load_protocol_config
    from mftlab.recipes.protocol_plan import plan_lines, plan_protocol, with_overrides, write_plan

    config = with_overrides(load_protocol_config(config_file), processes, device)
    plan = plan_protocol(config, out, runs_lora(config))
    if dry_run:
        for line in plan_lines(plan, config.runtime):
            click.echo(line)
        click.echo(f"wrote {write_plan(plan, config.runtime, out, config_file)}")
        return
    misfits = plan.misfit_lines()
    if misfits and not force:
        for line in misfits:
            click.echo(line, err=True)
        raise ConfigError(
            f"{len(misfits)} step(s) of {config_file} do not fit in the memory per GPU (lines above); change its "
            "runtime section as suggested, or pass --force to run anyway"
        )

    def run(progress):  # under the folder's lock, like everything it writes
        write_plan(plan, config.runtime, out, config_file)
        return run_protocol(config, out, progress, plans=plan.planned_gib(), schedule=plan.schedule())

    run_and_report(run, out, threads)

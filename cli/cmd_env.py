"""`mftlab env`: versions and devices, for bug reports."""

import platform

import click


@click.command("env")
def command():
    """Print versions of mftlab and its main dependencies, and the devices torch sees.

    \b
    Example:
      mftlab env
    """
    import accelerate
    import safetensors
    import torch
    import transformers

    from mftlab import __version__

    click.echo(f"mftlab        {__version__}")
    click.echo(f"python        {platform.python_version()}")
    click.echo(f"torch         {torch.__version__}")
    click.echo(f"transformers  {transformers.__version__}")
    click.echo(f"accelerate    {accelerate.__version__}")
    click.echo(f"safetensors   {safetensors.__version__}")
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        devices.append("mps")
    click.echo(f"devices       {', '.join(devices)}")
    click.echo(f"threads       {torch.get_num_threads()}")

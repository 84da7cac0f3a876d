"""Options shared by several commands, as decorators, and the helpers that turn them into objects."""

from __future__ import annotations

import contextlib
import os

import click

from mftlab.models.loading import DTYPES, load_model
from mftlab.mft.targeting import TargetSpec


def _stack(*decorators):
    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


model_options = _stack(
    click.option("--dtype", type=click.Choice(list(DTYPES)), default="auto", show_default=True,
                 help="Weight dtype to load the model in."),
    click.option("--gguf-file", default=None, help="Load this GGUF file (in the model folder) through transformers."),
    click.option("--trust-remote-code", is_flag=True, default=False,
                 help="Allow custom model code from the model folder (off by default)."),
)

target_options = _stack(
    click.option("--targets", default="all-linear", show_default=True,
                 help="Modules to mask: names/suffixes (q_proj,v_proj), re:<regex>, or all-linear (no output head)."),
    click.option("--layers", default=None, help="Layer ranges by the first numbered path segment, e.g. 4-7 or 0-3,20-23."),
    click.option("--exclude", default=None, help="Modules to leave out (same syntax as --targets)."),
)

force_option = click.option("--force", is_flag=True, default=False,
                            help="Proceed although the model's weights differ from the mask's base (fingerprints).")

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")


def own_folder(folder: str, **kwargs):
    """Hold --out for the whole command, taken before the slow imports, so a second writer is refused at once.

    Under a launcher (torchrun / accelerate set WORLD_SIZE > 1) nothing is taken here: the library
    takes the lock on the main process once the processes can agree on the outcome.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return contextlib.nullcontext()
    from mftlab.files.folder_lock import hold_folder

    return hold_folder(folder, **kwargs)


def load_model_from(model: str, dtype: str = "auto", gguf_file=None, trust_remote_code: bool = False, **_):
    """Load the model named by a MODEL argument plus `model_options`."""
    return load_model(model, dtype=dtype, gguf_file=gguf_file, trust_remote_code=trust_remote_code)


def target_spec_from(targets: str, layers: str | None, exclude: str | None) -> TargetSpec:
    return TargetSpec.parse(targets, layers, exclude)


def echo_targets(targets) -> None:
    """The --dry-run listing: every matched parameter with shape and element count."""
    for t in targets:
        click.echo(f"{t.param_name}\t{list(t.shape)}\t{t.numel}")
    click.echo(f"{len(targets)} tensors, {sum(t.numel for t in targets):,} weights")



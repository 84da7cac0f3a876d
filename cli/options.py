"""Options made from config fields, the options several commands share, and the helpers that use them.

An option's help, choices and default live with its config field (`mftlab.options_meta.doc`);
`option_for(Config, "field")` / `options_for(Config, "a", "b", ...)` make the click options from
them. Options that several commands share are defined here once (`model_options`,
`target_options`, `device_option`, `mask_ratio_option`, `force_option`, `seed_option`, ...); commands never import
each other's private helpers.
"""

from __future__ import annotations

import contextlib
import os

import click

from mftlab.errors import ConfigError
from mftlab.mask.codecs import CODECS
from mftlab.mft.masking import SelectionConfig
from mftlab.mft.targeting import TargetSpec
from mftlab.models.loading import load_model
from mftlab.options_meta import field_default, option_doc
from mftlab.training.config import TrainConfig


def stack_options(*decorators):
    """One decorator applying `decorators` so that the options show in the order given."""

    def apply(func):
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


def _number_text(x) -> str:
    # Powers of ten below 0.1 read best as 1e-3; everything else as %g (0.02, 0.5, 1).
    if isinstance(x, float) and 0 < x < 0.1 and f"{x:.0e}".startswith("1e"):
        return f"{x:.0e}".replace("e-0", "e-")
    return f"{x:g}" if isinstance(x, float) else str(x)


def option_for(config, name: str, *, dest: str | None = None, note: str | None = None, **click_kwargs):
    """A click option made from field `name` of the config dataclass `config`.

    The flag is the field name with dashes (or the metadata's `flag`), the default is the field's
    default, help and choices come from the field's metadata (`mftlab.options_meta.doc`). A bool
    field is an on/off flag; a tuple field is comma-separated text (the command parses it). `dest`
    renames the Python parameter, `note` adds a command's context to the help; `click_kwargs`
    are for what only the command knows (e.g. `required=True`, or a default of its own).
    """
    meta = option_doc(config, name)
    default = field_default(config, name)
    kwargs = {"default": default, "show_default": True, "help": meta.help + (f" {note}" if note else "")}
    if isinstance(default, tuple):
        kwargs["default"] = meta.text or ",".join(_number_text(x) for x in default)
    elif meta.text is not None:
        kwargs["default"] = meta.text
    if meta.choices is not None:
        kwargs["type"] = click.Choice(list(meta.choices))
    elif meta.flag is None and (isinstance(default, bool) or meta.type is bool):
        kwargs["is_flag"] = True
    elif meta.type is not None:
        kwargs["type"] = meta.type
    kwargs.update(click_kwargs)
    return click.option(meta.flag or "--" + name.replace("_", "-"), dest or name, **kwargs)


def options_for(config, *names: str):
    """One decorator adding `option_for(config, name)` for every name, in the order given."""
    return stack_options(*(option_for(config, name) for name in names))


def floats(text: str, name: str) -> tuple[float, ...]:
    """A comma list of numbers given to option `--name` (e.g. --ratios 0.02,0.1,0.4)."""
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ConfigError(f"--{name} '{text}' is not a comma list of numbers; write e.g. 0.02,0.1,0.4") from None


# -- options several commands share, each defined once -------------------------------------------------
# Every command that loads a model takes exactly these (TrainConfig holds their one definition).
model_options = options_for(TrainConfig, "dtype", "gguf_file", "trust_remote_code")

target_options = options_for(TrainConfig, "targets", "layers", "exclude")

# Every command that computes with a model takes it (mftlab.models.device.resolve_device reads it).
device_option = option_for(TrainConfig, "device")

mask_ratio_option = option_for(SelectionConfig, "mask_ratio")

force_option = click.option(
    "--force",
    is_flag=True,
    default=False,
    help="Proceed although the model's weights differ from the mask's base (fingerprints).",
)

seed_option = click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")

codec_option = click.option(
    "--codec",
    type=click.Choice(list(CODECS)),
    default="packbits",
    show_default=True,
    help="packbits: 1 bit/weight; zstd: entropy-coded (~0.49 bit/weight at 10%).",
)

no_figures_option = click.option(
    "--no-figures",
    is_flag=True,
    default=False,
    help="Write the result files only, no figures (redraw later with mftlab plot).",
)


def own_folder(folder: str, **kwargs):
    """Hold --out for the whole command, taken before the slow imports, so a second writer is refused at once.

    Under a launcher (torchrun / accelerate set WORLD_SIZE > 1) nothing is taken here: the library
    takes the lock on the main process once the processes can agree on the outcome.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return contextlib.nullcontext()
    from mftlab.files.folder_lock import hold_folder

    return hold_folder(folder, **kwargs)


def load_model_from(
    model: str, dtype: str = "auto", gguf_file=None, trust_remote_code: bool = False, device="cpu", **_
):
    """Load the model named by a MODEL argument plus `model_options`, onto `device` (a resolved torch.device)."""
    return load_model(model, dtype=dtype, gguf_file=gguf_file, trust_remote_code=trust_remote_code, device=device)


def target_spec_from(targets: str, layers: str | None, exclude: str | None) -> TargetSpec:
    return TargetSpec.parse(targets, layers, exclude)


def echo_targets(targets) -> None:
    """The --dry-run listing: every matched parameter with shape and element count."""
    for t in targets:
        click.echo(f"{t.param_name}\t{list(t.shape)}\t{t.numel}")
    click.echo(f"{len(targets)} tensors, {sum(t.numel for t in targets):,} weights")


threads_option = click.option(
    "--threads",
    type=int,
    default=1,
    show_default=True,
    help="CPU threads for torch. Tiny models (the demo's) run fastest on one; more threads help bigger models "
    "and hurt badly when other processes share the cores.",
)

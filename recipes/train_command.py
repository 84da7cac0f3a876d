"""A `TrainConfig` as the `mftlab train` command line that reproduces it.

The protocol launches its training steps as `torchrun ... -m mftlab.cli.main train ARGS` and writes
that line to the step's `command.sh`, so every field that differs from its default becomes a flag
(the flag names and on/off forms come from the same field metadata the command's options are made
from). Floats are written with `repr`, which reads back to the same number, so the launched run's
config equals the in-process one field for field (tests/recipes/test_train_command.py).
"""

from __future__ import annotations

from mftlab.options_meta import field_default, option_doc
from mftlab.training.config import TrainConfig

_NOT_FLAGS = ("model", "mftlab_version")


def _flag_names(name: str) -> tuple[str, str | None]:
    """(on flag, off flag or None) of field `name`, as `mftlab.cli.options.option_for` declares it."""
    declared = option_doc(TrainConfig, name).flag
    if declared is None:
        return "--" + name.replace("_", "-"), None
    on, _, off = declared.partition("/")
    return on, off or None


def train_arguments(config: TrainConfig) -> list[str]:
    """`mftlab train` arguments (MODEL first) that give `config`: every non-default field as a flag."""
    args = [config.model]
    for name, value in config.to_dict().items():
        if name in _NOT_FLAGS:
            continue
        default = field_default(TrainConfig, name)
        if value == default and type(value) is type(default):
            continue
        on, off = _flag_names(name)
        if isinstance(value, bool):
            if value:
                args.append(on)
            elif off is not None:
                args.append(off)
            else:
                raise ValueError(f"TrainConfig.{name}=False differs from its default but has no off flag")
        elif value is None:
            raise ValueError(f"TrainConfig.{name}=None differs from its default but no flag can say None")
        else:
            args += [on, repr(value) if isinstance(value, float) else str(value)]
    return args

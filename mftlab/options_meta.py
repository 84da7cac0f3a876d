"""What an option means, written once beside its config field (CONTRIBUTING.md, style rule 13).

A config field carries its option's help and choices in its dataclass metadata:

    mask_ratio: float = field(default=0.1, metadata=doc("Fraction of targeted weights masked."))
    selection: str = field(default="topk", metadata=doc("...", choices=SELECTIONS))

`mftlab.cli.options` makes click options from these fields (flag name from the field name,
default from the field, help and choices from here), so no command restates them. A config
that has the same option as another reuses its field with `like(OtherConfig, "name")`.
This module does not import click: the library describes its options, only the CLI parses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KEY = "mftlab.option"


@dataclass(frozen=True)
class OptionDoc:
    """The CLI-facing description of one config field.

    `type` is the value type when the default (None, or a tuple given as comma-separated text)
    does not tell it; `flag` is a click flag declaration such as "--cache-directions/--regenerate-
    directions" for a switch with an off spelling; `text` is how the default is written on the
    command line when the field holds a parsed value (e.g. "21x21" for a grid of (21, 21)).
    """

    help: str
    choices: tuple[str, ...] | None = None
    type: type | None = None
    flag: str | None = None
    text: str | None = None


def doc(help: str, *, choices=None, type=None, flag: str | None = None, text: str | None = None) -> dict:
    """Field metadata describing an option: `field(default=..., metadata=doc("help", choices=...))`."""
    return {KEY: OptionDoc(help, tuple(choices) if choices is not None else None, type, flag, text)}


def config_field(cls, name: str) -> dataclasses.Field:
    """The dataclass field `name` of config class `cls` (a clear error for a typo)."""
    found = {f.name: f for f in dataclasses.fields(cls)}
    if name not in found:
        raise KeyError(f"{cls.__name__} has no field '{name}'")
    return found[name]


def option_doc(cls, name: str) -> OptionDoc:
    """The OptionDoc of field `name` of `cls`; every field offered as an option has one."""
    meta = config_field(cls, name).metadata.get(KEY)
    if meta is None:
        raise KeyError(f"{cls.__name__}.{name} has no option metadata; give it metadata=doc('help ...')")
    return meta


def field_default(cls, name: str):
    """The field's default (calling a default_factory), or None for a required field."""
    f = config_field(cls, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def like(cls, name: str, **changes):
    """A field equal to `cls`'s field `name` (default and metadata), for a config that offers the same option.

    `changes` replaces parts of its OptionDoc, e.g. `like(TrainConfig, "seed", help="Seed of every point.")`.
    """
    f = config_field(cls, name)
    meta = dict(f.metadata)
    if changes:
        meta[KEY] = dataclasses.replace(meta[KEY], **changes)
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=meta)
    if f.default is not dataclasses.MISSING:
        return dataclasses.field(default=f.default, metadata=meta)
    return dataclasses.field(metadata=meta)

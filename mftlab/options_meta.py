"""What an option means, written once beside its config field (CONTRIBUTING.md, style rule 13).

A config field carries its option's help and choices in its dataclass metadata:

    mask_ratio: float = field(default=0.1, metadata=doc("Fraction of targeted weights masked."))
    selection: str = field(default="topk", metadata=doc("...", choices=SELECTIONS))

`mftlab.cli.options` makes click options from these fields (flag name from the field name,
default from the field, help and choices from here), so no command restates them. A config
that has the same option as another reuses its field with `like(OtherConfig, "name")`.
This module does not import click: the library describes its options, only the CLI parses them.

The metadata also says what a valid value is, so one check serves every config:
`check_options(config)` (called from `__post_init__`) refuses a value outside the field's
`choices` or its `check` (`positive()`, `at_least(n)`, `between(low, high)`), always with the
message shape of `MftlabError.for_option`: `granularity='rows' is unknown; choose one of ...` from
Python, `--granularity 'rows' is unknown; ...` on the command line.

A config may nest another config as an option group (`field(default_factory=SelectionConfig,
metadata=group())`): its fields are options of the outer config under their own names (flags,
`--config` keys and files stay flat; see `mftlab.option_groups`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from mftlab.errors import ConfigError

KEY = "mftlab.option"
GROUP = "mftlab.option_group"


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
    check: Callable[[object], str | None] | None = None  # value -> what is wrong with it, or None


def doc(
    help: str,
    *,
    choices=None,
    type=None,
    flag: str | None = None,
    text: str | None = None,
    check: Callable[[object], str | None] | None = None,
) -> dict:
    """Field metadata describing an option: `field(default=..., metadata=doc("help", choices=...))`."""
    return {KEY: OptionDoc(help, tuple(choices) if choices is not None else None, type, flag, text, check)}


# -- what a valid value is ------------------------------------------------------------------------------
def unknown_choice(choices) -> str:
    """The problem text of a value outside `choices` (every "unknown value" message ends this way)."""
    return f"is unknown; choose one of {', '.join(choices)}"


def choice_error(name: str, value, choices, *, flag: str | None = None) -> ConfigError:
    """The one error for option `name` given a value outside `choices` (the value in quotes)."""
    return ConfigError.for_option(name, value, unknown_choice(choices), quote=True, flag=flag)


def positive(hint: str = "") -> Callable[[object], str | None]:
    """A check: the value is > 0 (`hint` follows the problem, e.g. " (e.g. 2e-5)")."""
    return lambda value: None if value > 0 else f"must be positive{hint}"


def at_least(low: int, hint: str = "") -> Callable[[object], str | None]:
    """A check: a whole number (not a bool) >= `low`; None passes (an optional count)."""

    def check(value):
        whole = isinstance(value, int) and not isinstance(value, bool)
        return None if value is None or (whole and value >= low) else f"must be a whole number of at least {low}{hint}"

    return check


def between(low: float, high: float, *, closed: str = "[]", hint: str = "") -> Callable[[object], str | None]:
    """A check: `low` <= value <= `high`, each end open or closed as `closed` writes it ("[)", "(]", ...)."""
    left, right = closed

    def check(value):
        above = value >= low if left == "[" else value > low
        below = value <= high if right == "]" else value < high
        return None if above and below else f"is outside {left}{low:g}, {high:g}{right}{hint}"

    return check


def check_options(config, *, flag_words: bool = False) -> None:
    """Refuse the first field of `config` outside its metadata's `choices` or `check` (one message shape).

    `flag_words`: the message names the flag in Python too (`--plane 'pca' is unknown; ...`), for a
    config whose other messages do (one built from command-line text, such as LandscapeConfig).
    """
    try:
        _check_fields(config)
    except ConfigError as error:
        if flag_words:
            raise ConfigError(error.cli_message()) from None
        raise


def _check_fields(config) -> None:
    for f in dataclasses.fields(config):
        meta = f.metadata.get(KEY)
        if meta is None:
            continue
        value, flag = getattr(config, f.name), meta.flag.partition("/")[0] if meta.flag else None
        # None passes only where it is the field's own default (an optional choice left unset)
        unset = value is None and f.default is None
        if meta.choices is not None and not unset and value not in meta.choices:
            raise choice_error(f.name, value, meta.choices, flag=flag)
        problem = meta.check(value) if meta.check is not None else None
        if problem is not None:
            raise ConfigError.for_option(f.name, value, problem, flag=flag)


# -- finding a field, through option groups -------------------------------------------------------------
def group() -> dict:
    """Field metadata marking a nested config as an option group of the outer config."""
    return {GROUP: True}


def group_class(f: dataclasses.Field):
    """The nested config class of group field `f`, or None for a plain option."""
    return f.default_factory if f.metadata.get(GROUP) else None


def option_names(cls) -> list[str]:
    """Every option of `cls` in declaration order, a group's options in the group's place."""
    names = []
    for f in dataclasses.fields(cls):
        inner = group_class(f)
        names += option_names(inner) if inner is not None else [f.name]
    return names


def config_field(cls, name: str) -> dataclasses.Field:
    """The dataclass field of option `name` of config class `cls`, found in its groups too (a clear error for a
    typo). A group is not itself an option: a name that is both a group and one of its options is the option."""
    for f in dataclasses.fields(cls):
        inner = group_class(f)
        if inner is not None and name in option_names(inner):
            return config_field(inner, name)
        if inner is None and f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field '{name}'")


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

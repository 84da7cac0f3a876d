"""A config made of option groups that still reads, writes and parses flat (CONTRIBUTING.md, style rule 13).

`TrainConfig` nests `selection: SelectionConfig` rather than copying its six fields. Users' scripts,
`--config` files, `config.json` and the command line all name those options flat (`mask_ratio=0.2`,
`--mask-ratio 0.2`), so a grouped config:

- is built from flat keywords: `TrainConfig(model=..., mask_ratio=0.2)` sets the group's field;
  a group may also be given whole (`selection=SelectionConfig(...)`), flat keywords then change it;
- reads flat: `config.mask_ratio` is `config.selection.mask_ratio` (for scripts; library code reads the
  group);
- writes flat: `flat_dict(config)` has the group's fields in the group's place, so the file stays as it
  was before the group existed.

A name may be both a group and one of its options (`selection`, the rule `--selection topk`): given a
group object it is the group, given anything else it is the option. Note `dataclasses.replace(config,
selection="threshold")` therefore starts from the group's defaults; change one option with
`config.replace(selection="threshold")`, which keeps the others.
"""

from __future__ import annotations

import dataclasses

from mftlab.options_meta import group_class, option_names

_MISSING = dataclasses.MISSING


class GroupedConfig:
    """Mixin for a frozen `@dataclass(frozen=True, init=False)` config whose fields include option groups."""

    def __init__(self, *args, **options):
        own = dataclasses.fields(self)
        if len(args) > len(own):
            raise TypeError(f"{type(self).__name__}() takes at most {len(own)} positional arguments")
        for f, value in zip(own, args):
            if f.name in options:
                raise TypeError(f"{type(self).__name__}() got multiple values for argument '{f.name}'")
            options[f.name] = value
        for f in own:
            inner = group_class(f)
            value = _group_value(f, inner, options) if inner is not None else _plain_value(self, f, options)
            object.__setattr__(self, f.name, value)
        if options:
            raise TypeError(f"{type(self).__name__}() got an unexpected keyword argument '{next(iter(options))}'")
        self.__post_init__()

    def __post_init__(self):
        pass

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: a group's option read flat (config.mask_ratio).
        if not name.startswith("__"):
            for f in dataclasses.fields(self):
                inner = group_class(f)
                if inner is not None and name in option_names(inner) and f.name in self.__dict__:
                    return getattr(self.__dict__[f.name], name)
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def replace(self, **changes) -> "GroupedConfig":
        """A copy with the flat options `changes` changed (the other options of a group are kept)."""
        return type(self)(**{**flat_dict(self), **changes})


def _group_value(f: dataclasses.Field, inner, options: dict):
    given = options.pop(f.name, _MISSING)
    members = option_names(inner)
    flat = {name: options.pop(name) for name in members if name in options}
    if given is not _MISSING and not isinstance(given, inner):
        if f.name not in members:
            raise TypeError(f"{f.name} must be a {inner.__name__}, not {type(given).__name__}")
        flat[f.name] = given  # the group's own option of the same name
        given = _MISSING
    base = inner() if given is _MISSING else given
    return dataclasses.replace(base, **flat) if flat else base


def _plain_value(config, f: dataclasses.Field, options: dict):
    if f.name in options:
        return options.pop(f.name)
    if f.default is not _MISSING:
        return f.default
    if f.default_factory is not _MISSING:
        return f.default_factory()
    raise TypeError(f"{type(config).__name__}() missing required argument: '{f.name}'")


def flat_dict(config) -> dict:
    """Every option of `config` by its flat name, in declaration order (a group's fields in its place)."""
    values = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values.update(flat_dict(value) if group_class(f) is not None else {f.name: value})
    return values

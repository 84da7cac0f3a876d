"""Options are defined once: made from config fields, shared between commands, no private cross-imports."""

import ast
import importlib
import pathlib

import click
import pytest

from mftlab.cli.main import _command_modules
from mftlab.cli.options import option_for
from mftlab.mft.masking import SELECTION_RULES
from mftlab.mft.selection import GRANULARITY_RULES
from mftlab.options_meta import option_doc
from mftlab.training.config import TrainConfig

CLI_DIR = pathlib.Path(importlib.import_module("mftlab.cli").__file__).parent

# Options that mean the same in every command that has them: one help text (a command may add a note
# after it), one default, one set of choices. The exceptions are options of the same name that mean
# something else in that command.
SHARED = (
    "dtype",
    "gguf_file",
    "trust_remote_code",
    "targets",
    "layers",
    "exclude",
    "mask_ratio",
    "force",
    "no_figures",
    "codec",
    "dist_timeout",
    "skip_bad",
    "device",
)
OWN_MEANING = {
    ("landscape", "targets"),
    ("landscape", "layers"),
    ("landscape", "exclude"),  # what to perturb; default: all
    ("demo", "layers"),  # the demo's one layer group (default 2-3)
    ("plan", "dtype"),  # plans without loading: auto = the dtype the model's config names
    ("train", "force"),  # start over in an --out that holds a run
    ("compare-masks", "force"),  # compare masks over different tensors
    ("protocol", "force"),  # run although the plan says a step does not fit
    ("protocol", "device"),  # overrides the config's runtime.device (auto | cpu | cuda, no cuda:N)
}


def _commands() -> dict[str, click.Command]:
    return {name: importlib.import_module(module).command for name, module in _command_modules().items()}


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


def _choices(option: click.Option):
    return tuple(getattr(option.type, "choices", ()) or ())


@pytest.mark.parametrize("name", SHARED)
def test_shared_options_have_one_definition(name):
    found = {
        cmd: _options(c)[name]
        for cmd, c in _commands().items()
        if name in _options(c) and (cmd, name) not in OWN_MEANING
    }
    assert len(found) >= 2, f"--{name} is shared by fewer than two commands: {sorted(found)}"
    helps = {cmd: o.help or "" for cmd, o in found.items()}
    shortest = min(helps.values(), key=len)
    for cmd, option in found.items():
        assert helps[cmd].startswith(shortest), f"{cmd} --{name}: {helps[cmd]!r} is not {shortest!r} (+ a note)"
        first = next(iter(found.values()))
        assert (option.default, _choices(option), option.is_flag, option.opts) == (
            first.default,
            _choices(first),
            first.is_flag,
            first.opts,
        ), f"{cmd} --{name} differs"


def test_every_model_loading_command_takes_the_same_model_options():
    loaders = {cmd: _options(c) for cmd, c in _commands().items() if "gguf_file" in _options(c)}
    assert {
        "train",
        "sweep",
        "baseline",
        "eval",
        "apply",
        "convert",
        "stats",
        "inspect",
        "compare-masks",
        "landscape",
    } <= set(loaders)
    for cmd, options in loaders.items():
        for name in ("dtype", "gguf_file", "trust_remote_code"):
            assert options[name].help == option_doc(TrainConfig, name).help, (cmd, name)
        assert _choices(options["dtype"]) == ("float32", "bfloat16", "float16", "auto"), cmd


def test_no_cli_module_imports_a_private_name_of_another():
    offenders = []
    for path in CLI_DIR.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("mftlab.cli", "cli")):
                offenders += [f"{path.name}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offenders


def test_train_options_are_made_from_every_config_field():
    options = _options(_commands()["train"])
    for name in TrainConfig.__dataclass_fields__:
        if name in ("model", "mftlab_version"):
            continue
        meta = option_doc(TrainConfig, name)
        assert options[name].help == meta.help
        if meta.choices:
            assert _choices(options[name]) == meta.choices


def test_selection_choices_come_from_the_rule_tables():
    options = _options(_commands()["train"])
    assert _choices(options["selection"]) == tuple(SELECTION_RULES)
    assert _choices(options["granularity"]) == tuple(GRANULARITY_RULES)
    assert _choices(_options(_commands()["baseline"])["granularity"]) == tuple(GRANULARITY_RULES)


def test_option_for_takes_default_help_and_type_from_the_field():
    @click.command()
    @option_for(TrainConfig, "max_steps")
    @option_for(TrainConfig, "mask_ratio", note="A note.")
    @option_for(TrainConfig, "resume")
    def cmd(max_steps, mask_ratio, resume):
        click.echo(f"{max_steps!r} {mask_ratio!r} {resume!r}")

    from click.testing import CliRunner

    assert CliRunner().invoke(cmd, []).output.strip() == "None 0.1 False"
    assert CliRunner().invoke(cmd, ["--max-steps", "3", "--resume"]).output.strip() == "3 0.1 True"
    help_text = CliRunner().invoke(cmd, ["--help"]).output
    assert "Fraction of targeted weights masked" in help_text and "A note." in help_text
    assert CliRunner().invoke(cmd, ["--max-steps", "x"]).exit_code == 2

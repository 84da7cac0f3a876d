"""Functions a reader can hold in their head (CONTRIBUTING.md, style rules 1 and 6).

No function in the library rooms is over 80 lines, a command's body (`command` in cli/cmd_*.py) is
at most 60 (parse, build, call, print), and a function taking more than five arguments takes the rest
by keyword. Lines are counted from `def` to the last line of the body, docstring included.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
ROOMS = ("mftlab", "analysis", "figures", "cli", "recipes")
MAX_LINES, MAX_COMMAND_LINES, MAX_POSITIONAL = 80, 60, 5
# torch.autograd.Function.forward is called positionally by Function.apply
POSITIONAL_BY_PROTOCOL = {("mftlab/mft/ste.py", "forward")}


def _functions():
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield str(path.relative_to(ROOT)), node


def test_no_function_is_too_long():
    long = [
        f"{where}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for where, node in _functions()
        if node.end_lineno - node.lineno + 1 > MAX_LINES
    ]
    assert long == []


def test_commands_are_thin():
    thick = [
        f"{where} ({node.end_lineno - node.lineno + 1} lines)"
        for where, node in _functions()
        if where.startswith("cli/cmd_")
        and node.name == "command"
        and node.end_lineno - node.lineno + 1 > MAX_COMMAND_LINES
    ]
    assert thick == []


def test_many_arguments_are_keyword_only():
    def positional(node):
        args = node.args.posonlyargs + node.args.args
        return [a.arg for a in args if a.arg not in ("self", "cls")]

    crowded = [
        f"{where}:{node.lineno} {node.name}"
        for where, node in _functions()
        if len(positional(node)) > MAX_POSITIONAL
        and not (where.startswith("cli/cmd_") and node.name == "command")  # click passes options by keyword
        and (where, node.name) not in POSITIONAL_BY_PROTOCOL
    ]
    assert crowded == []

"""The rooms' imports point one way (CONTRIBUTING.md, section 1): core library <- analysis <- recipes <- cli,
and figures read saved results only (the core library's results contract), never recipes or cli.

Every import in every module counts, the ones inside functions too. `mftlab/__init__.py` serves the public
API lazily (module names as strings, imported on first use) and is the one module allowed to name every room.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {
    "mftlab": "mftlab",
    "analysis": "mftlab.analysis",
    "recipes": "mftlab.recipes",
    "figures": "mftlab.figures",
    "cli": "mftlab.cli",
}
MAY_IMPORT = {  # room -> the rooms its modules may import from
    "core": {"core"},
    "analysis": {"core", "analysis"},
    "figures": {"core", "figures"},
    "recipes": {"core", "analysis", "recipes"},
    "cli": {"core", "analysis", "figures", "recipes", "cli"},
}


def room(module: str) -> str | None:
    for prefix, name in (("mftlab.cli", "cli"), ("mftlab.recipes", "recipes"), ("mftlab.figures", "figures")):
        if module == prefix or module.startswith(prefix + "."):
            return name
    if module == "mftlab.analysis" or module.startswith("mftlab.analysis."):
        return "analysis"
    return "core" if module == "mftlab" or module.startswith("mftlab.") else None


def modules():
    """(module name, path) of every module of the five folders (each folder is one room)."""
    for folder, package in FOLDERS.items():
        for where, dirs, files in os.walk(os.path.join(ROOT, folder)):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(where, name), os.path.join(ROOT, folder))[:-3]
                    parts = [p for p in rel.split(os.sep) if p != "__init__"]
                    yield ".".join([package, *parts]), os.path.join(where, name)


def imported(path: str) -> list[tuple[int, str]]:
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)]
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names if node.module == "mftlab"]
    return found


def test_no_module_imports_from_a_room_above_it():
    upward = []
    for module, path in modules():
        if module == "mftlab":
            continue  # the public API: lazily names every room
        here = room(module)
        for line, name in imported(path):
            there = room(name)
            if there is not None and there not in MAY_IMPORT[here]:
                upward.append(f"{os.path.relpath(path, ROOT)}:{line} ({here}) imports {name} ({there})")
    assert upward == [], "\n".join(upward)


def test_the_rule_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from mftlab.recipes.protocol import run_protocol\n")
    assert [name for _, name in imported(str(bad))] == ["mftlab.recipes.protocol"]
    assert room("mftlab.recipes.protocol") not in MAY_IMPORT[room("mftlab.training.loop")]

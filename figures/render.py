"""Re-render every figure of a results folder from its saved results (no model is loaded).

Each figures module that can redraw a kind of result defines:
    RESULT = "stats"                      # the kind (mftlab.files.results): its JSON marks such results in a folder
    def render(result_dir) -> list[str]   # reads it kind-checked, writes the figures next to it, returns their paths
and is discovered here (a module that also sets OWNS_SUBFOLDERS = True redraws its subfolders itself),
so adding a figure kind never edits this file.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from mftlab.files.results import result_files


def renderers() -> dict[str, object]:
    """Result JSON file name -> module, for every figures module that defines RESULT and render."""
    package = importlib.import_module("mftlab.figures")
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"mftlab.figures.{info.name}")
        if hasattr(module, "RESULT") and hasattr(module, "render"):
            found[result_files(module.RESULT).json] = module
    return found


def render_all(result_dir: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Redraw every figure under `result_dir`; returns the written paths (empty if none found)."""
    table = renderers()
    written = []
    for folder, dirs, files in os.walk(result_dir):
        dirs.sort()
        for result_file, module in sorted(table.items()):
            if result_file in files:
                written += module.render(folder)
                if getattr(module, "OWNS_SUBFOLDERS", False):
                    dirs[:] = []  # that module redraws what lies below (e.g. the demo report)
        if not recursive:
            break
    return written


def plot(result_dir: str | os.PathLike) -> list[str]:
    """Redraw every figure (PNG, PDF, HTML) of the results saved under `result_dir`; returns the paths.

    Example:
        >>> mftlab.mask_stats(mask, model).save("results/stats")  # doctest: +SKIP
        >>> mftlab.plot("results/stats")  # doctest: +SKIP
        ['results/stats/sparsity_by_layer.png', ...]
    """
    from mftlab.errors import MftlabError

    if not os.path.isdir(result_dir):
        raise MftlabError(f"results folder '{result_dir}' does not exist; pass the --out folder of an earlier command")
    written = render_all(result_dir)
    if not written:
        known = ", ".join(sorted(renderers())) or "none"
        raise MftlabError(
            f"no results found in '{result_dir}' (looked for: {known}); pass the --out folder of stats, "
            "compare-masks or landscape"
        )
    return written

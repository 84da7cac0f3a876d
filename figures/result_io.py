"""Reading saved results for figures (figures never import analysis code or load models)."""

from __future__ import annotations

import json
import os

from mftlab.errors import MftlabError


def load_result(result_dir: str | os.PathLike, file_name: str) -> dict:
    """The JSON result `file_name` in `result_dir`, with a clear error when it is unusable."""
    path = os.path.join(os.fspath(result_dir), file_name)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MftlabError(f"'{path}' does not exist; run the command that writes it first") from None
    except ValueError as exc:
        raise MftlabError(f"'{path}' is not valid JSON ({exc}); rerun the command that wrote it") from None


def out_base(result_dir: str | os.PathLike, name: str) -> str:
    """Path without extension for a figure next to its results."""
    return os.path.join(os.fspath(result_dir), name)


def percent(x: float | None) -> float:
    """Fraction -> percent, None -> NaN (drawn as a gap)."""
    return float("nan") if x is None else 100.0 * x

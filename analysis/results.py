"""Saving analysis results: JSON (strict, no NaN/Infinity) and CSV, written atomically.

Results are plain dicts/lists so figures can be redrawn from the saved files alone.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from mftlab import __version__
from mftlab.files.atomic import write_text_atomic
from mftlab.errors import MftlabError


def finite(x: float | None, digits: int = 12) -> float | None:
    """A float that JSON can hold: NaN becomes None, +-inf becomes None (say why in the docs)."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return float(f"{x:.{digits}g}")


def header(kind: str) -> dict:
    """The first keys of every result file."""
    return {"kind": kind, "mftlab_version": __version__}


def write_json(path: str | os.PathLike, data: dict) -> str:
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
    return os.fspath(path)


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts to CSV; columns default to the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_text_atomic(path, buf.getvalue())
    return os.fspath(path)


def read_json(path: str | os.PathLike, kind: str) -> dict:
    """Load a result file and check that it holds results of `kind`."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise MftlabError(f"result file '{path}' does not exist; run the command that writes it first") from None
    except ValueError as exc:
        raise MftlabError(f"result file '{path}' is not valid JSON ({exc}); rerun the command that wrote it") from None
    if not isinstance(data, dict) or data.get("kind") != kind:
        found = data.get("kind") if isinstance(data, dict) else type(data).__name__
        raise MftlabError(f"result file '{path}' holds {found!r}, not {kind!r} results; pass the right folder")
    return data


def ensure_dir(path: str | os.PathLike) -> str:
    """Create the output folder (and parents); a file in the way is an error."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise MftlabError(f"--out '{path}' is a file; pass a folder for the results")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise MftlabError(f"cannot create output folder '{path}': {exc.strerror or exc}") from None
    return path

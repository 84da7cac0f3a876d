"""The results contract: every result file mftlab writes and `mftlab plot` reads, named in one place.

A result is one JSON document (plus, for some kinds, a CSV of its rows and an npz of its arrays)
in a folder. The JSON starts with a header, `{"kind": <tag>, "mftlab_version": ...}`, and is strict
(no NaN / Infinity: missing values are null), so any JSON reader can load it. Writers write every
file atomically and the JSON last: a folder that holds the JSON holds a complete result.

    write_result(folder, "stats", data, rows=csv_rows)   # stats.json (+ stats.csv); returns the paths
    read_result(folder, "stats")                         # the dict, kind-checked
    read_arrays(folder, "landscape")                     # the npz companion, as {name: array}
    add_to_result(folder, "landscape", {"peak_mem_gib": 1.2})  # keys known only after writing

Readers check the kind, so passing the wrong folder is a one-line `MftlabError` naming the file and
what to run, never a KeyError deep inside a figure. Light on purpose (no torch): analysis, figures
and the CLI all import it. File names, JSON keys and CSV columns are fixed: users' scripts read them.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass

from mftlab import __version__
from mftlab.errors import MftlabError
from mftlab.files.atomic import atomic_path, write_text_atomic


@dataclass(frozen=True)
class ResultFiles:
    """The files of one kind of result (names relative to its folder)."""

    tag: str  # the "kind" value in the JSON header
    json: str  # the document; written last, its presence marks a complete result
    writer: str  # what writes it (for error messages)
    csv: str | None = None  # one row per record (spreadsheets)
    arrays: str | None = None  # numpy arrays (npz)
    requires: tuple[str, ...] = ()  # keys readers need that older versions of the writer did not write


# kind -> its files. The tags and names predate this table and never change.
RESULT_KINDS: dict[str, ResultFiles] = {
    "stats": ResultFiles("mftlab.stats", "stats.json", "`mftlab stats` or StatsResult.save", csv="stats.csv"),
    "dynamics": ResultFiles(
        "mftlab.dynamics", "dynamics.json", "`mftlab stats --run` or DynamicsResult.save", csv="dynamics.csv"
    ),
    "overlap": ResultFiles(
        "mftlab.overlap", "overlap.json", "`mftlab compare-masks` or OverlapResult.save", csv="overlap.csv"
    ),
    "reference_overlap": ResultFiles(
        "mftlab.reference_overlap",
        "reference_overlap.json",
        "`mftlab compare-masks --reference` or ReferenceResult.save",
        csv="reference_overlap.csv",
    ),
    "landscape": ResultFiles(
        "landscape", "landscape.json", "`mftlab landscape` or LandscapeResult.save", arrays="landscape.npz"
    ),
    "sweep": ResultFiles("sweep", "sweep.json", "`mftlab sweep`", csv="sweep.csv"),
    "significance": ResultFiles(
        "mftlab.significance",
        "significance.json",
        "`mftlab compare-evals --out` or EvalComparison.save",
        csv="significance.csv",
    ),
    "demo": ResultFiles(
        "demo",
        "demo.json",
        "`mftlab demo` or `mftlab protocol`",
        # the methods' labels and roles, which the figures and the report read (written since 0.1.0's protocol)
        requires=("method_names", "method_short", "curve_names", "curve_from", "reference_lines", "roles"),
    ),
}


def result_files(kind: str) -> ResultFiles:
    """The files of `kind` (a key of RESULT_KINDS)."""
    try:
        return RESULT_KINDS[kind]
    except KeyError:
        raise MftlabError(f"unknown result kind {kind!r}; known: {', '.join(RESULT_KINDS)}") from None


def header(kind: str) -> dict:
    """The first keys of every result file of `kind`."""
    return {"kind": result_files(kind).tag, "mftlab_version": __version__}


def result_path(folder: str | os.PathLike, kind: str, part: str = "json") -> str:
    """Path of the `part` ("json", "csv" or "arrays") of a `kind` result in `folder`."""
    name = getattr(result_files(kind), part)
    if name is None:
        raise MftlabError(f"{kind} results have no {part} file")
    return os.path.join(os.fspath(folder), name)


# -- plain files (also for files outside the table, e.g. the demo's step caches) ----------------
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


def write_json(path: str | os.PathLike, data) -> str:
    """Strict JSON (NaN / Infinity refused), written atomically; returns the path."""
    write_text_atomic(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
    return os.fspath(path)


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None) -> str:
    """Rows of dicts to CSV (None -> empty cell); columns default to the union of keys in first-seen order."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})
    write_text_atomic(path, buf.getvalue())
    return os.fspath(path)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_json(path: str | os.PathLike, writer: str = "the command that wrote it"):
    """A JSON file, with a one-line error naming the file when it is missing or damaged."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise MftlabError(f"result file '{path}' does not exist; run {writer} to write it") from None
    except IsADirectoryError:
        raise MftlabError(f"result file '{path}' is a folder; pass the folder that holds it") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise MftlabError(f"result file '{path}' is not valid JSON ({_reason(exc)}); run {writer} again") from None
    except OSError as exc:
        raise MftlabError(f"cannot read result file '{path}': {exc.strerror or exc}") from None


def read_json_lines(path: str | os.PathLike) -> list:
    """The records of a JSON-lines log that a run appends to ([] when it is not there yet); a line cut short
    by a kill, or being written right now, is skipped."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    continue
    except OSError:  # not there yet, or unreadable: what was read so far
        pass
    return rows


# -- the contract ------------------------------------------------------------------------------
def write_result(
    folder: str | os.PathLike,
    kind: str,
    data: dict,
    *,
    rows: list[dict] | None = None,
    columns: list[str] | None = None,
    arrays: dict | None = None,
) -> list[str]:
    """Write a `kind` result into `folder` (made if needed); returns the written paths, JSON first.

    `data` gets the header (a header already in it must be this kind's); `rows` go to the kind's
    CSV, `arrays` ({name: array}) to its npz. Companions are written before the JSON.
    """
    spec = result_files(kind)
    if data.get("kind", spec.tag) != spec.tag:
        raise MftlabError(f"cannot save {data.get('kind')!r} data as {kind} results ({spec.tag!r})")
    folder = ensure_dir(folder)
    companions = []
    if rows is not None:
        companions.append(write_csv(result_path(folder, kind, "csv"), rows, columns))
    if arrays is not None:
        import numpy as np

        path = result_path(folder, kind, "arrays")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        companions.append(path)
    document = {**header(kind), **{k: v for k, v in data.items() if k not in ("kind", "mftlab_version")}}
    return [write_json(result_path(folder, kind), document)] + companions


def add_to_result(folder: str | os.PathLike, kind: str, values: dict) -> str:
    """Add `values` (keys measured after the result was written, e.g. peak memory) to the `kind` result's
    JSON in `folder`, rewriting only the JSON (atomically); the other keys stay as they are. Returns its path."""
    data = read_result(folder, kind)
    return write_json(result_path(folder, kind), {**data, **values})


def _path_of(folder_or_path: str | os.PathLike, kind: str, part: str = "json") -> str:
    """A folder -> the part's file in it; one of the kind's files -> its sibling `part`; else as given."""
    path = os.fspath(folder_or_path)
    if os.path.isdir(path):
        return result_path(path, kind, part)
    spec = result_files(kind)
    if os.path.basename(path) in (spec.json, spec.csv, spec.arrays):
        return result_path(os.path.dirname(path), kind, part)
    return path


def read_result(folder_or_path: str | os.PathLike, kind: str) -> dict:
    """The `kind` result in a folder (or the JSON file itself), checked to be of that kind."""
    spec = result_files(kind)
    path = _path_of(folder_or_path, kind)
    data = read_json(path, spec.writer)
    found = data.get("kind") if isinstance(data, dict) else None
    if found != spec.tag:
        what = (
            f"{found!r} results"
            if found is not None
            else "no 'kind' header"
            if isinstance(data, dict)
            else f"a JSON {type(data).__name__}"
        )
        raise MftlabError(
            f"result file '{path}' holds {what}, not {spec.tag!r} results; pass a folder written by {spec.writer}"
        )
    missing = [key for key in spec.requires if key not in data]
    if missing:
        raise MftlabError(
            f"result file '{path}' was written by an older mftlab (no '{missing[0]}'); run {spec.writer} "
            "into the same folder again (finished steps are reused)"
        )
    return data


def read_arrays(folder_or_path: str | os.PathLike, kind: str) -> dict:
    """The npz companion of a `kind` result ({name: numpy array}); a folder or the npz path."""
    import zipfile

    import numpy as np

    spec = result_files(kind)
    path = _path_of(folder_or_path, kind, "arrays")
    try:
        with np.load(path) as npz:
            return {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise MftlabError(
            f"result file '{path}' is missing; run {spec.writer} (--resume finishes a run) to write it"
        ) from None
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise MftlabError(f"result file '{path}' is damaged ({_reason(exc)}); run {spec.writer} again") from None

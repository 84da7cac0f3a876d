"""Per-example result files: one JSON line per test example, so two models can be compared pairwise.

Written by `mftlab eval --per-example FILE.jsonl` (and by the protocol for every method and test set):

    {"index": 0, "id": "q17", "key": "3f2a...", "tokens": 4, "loss_sum": 1.9, "loss": 0.47,
     "answer_correct": 1, "scored_by": "teacher-forcing", "correct": 1}

`id` is the record's own `id` field (or null), `key` a hash of its text; `correct` is the example's
exact match (`scored_by` says how: "generation", "teacher-forcing", or "lm-eval:METRIC" for lm-eval's
per-document metric, which has no loss). Two files are paired by `id` when every line has one, else
line by line with the `key`s checked to agree: different example sets are an error, never a silent
comparison of different questions.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mftlab.errors import MftlabError
from mftlab.files.atomic import write_text_atomic

REQUIRED = ("index", "correct")


def write_per_example(path: str | os.PathLike, rows: list[dict]) -> str:
    """The rows as JSON lines (strict JSON, written atomically); returns the path."""
    text = "".join(json.dumps(row, allow_nan=False) + "\n" for row in rows)
    write_text_atomic(path, text)
    return os.fspath(path)


def read_per_example(path: str | os.PathLike) -> list[dict]:
    """The rows of a per-example file, checked to be one (a one-line error names the file otherwise)."""
    path = os.fspath(path)
    hint = "write one with `mftlab eval ... --per-example FILE.jsonl`"
    try:
        with open(path, encoding="utf-8") as f:
            lines = [line for line in f if line.strip()]
    except FileNotFoundError:
        raise MftlabError(f"per-example file '{path}' does not exist; {hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MftlabError(f"cannot read per-example file '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    rows = []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError:
            raise MftlabError(f"'{path}' line {number} is not JSON: not a per-example file; {hint}") from None
        missing = [k for k in REQUIRED if not isinstance(row, dict) or k not in row]
        if missing:
            raise MftlabError(f"'{path}' line {number} has no '{missing[0]}': not a per-example file; {hint}")
        rows.append(row)
    if not rows:
        raise MftlabError(f"per-example file '{path}' is empty; {hint}")
    return rows


def _values(rows: list[dict], metric: str, name: str) -> np.ndarray:
    """Each example's value: `correct` (0/1) for exact match, the mean answer-token loss for loss."""
    if metric == "exact_match":
        return np.array([float(r["correct"]) for r in rows])
    if any(r.get("loss_sum") is None or not r.get("tokens") for r in rows):
        scorer = rows[0].get("scored_by", "?")
        raise MftlabError(f"'{name}' has no per-example loss (scored by {scorer}); use --metric exact_match for it")
    return np.array([r["loss_sum"] / r["tokens"] for r in rows])


def _aligned(a: list[dict], b: list[dict], names: tuple[str, str]) -> list[dict]:
    """b's rows in a's order, or an error when the two files do not cover the same examples."""
    if len(a) != len(b):
        raise MftlabError(
            f"'{names[0]}' has {len(a)} examples and '{names[1]}' {len(b)}; compare results on the same examples"
        )
    if all(r.get("id") is not None for r in a + b):
        by_id = {str(r["id"]): r for r in b}
        if len(by_id) == len(b) and len({str(r["id"]) for r in a}) == len(a):
            missing = [str(r["id"]) for r in a if str(r["id"]) not in by_id]
            if missing:
                raise MftlabError(
                    f"example id '{missing[0]}' of '{names[0]}' is not in '{names[1]}' ({len(missing)} ids differ); "
                    "compare results on the same examples"
                )
            b = [by_id[str(r["id"])] for r in a]
    for ra, rb in zip(a, b):
        if ra.get("key") and rb.get("key") and ra["key"] != rb["key"]:
            raise MftlabError(
                f"example {ra['index']} differs between '{names[0]}' and '{names[1]}' (its text does not match); "
                "compare results on the same examples (same data, same --data-fraction and --seed)"
            )
    return b


def paired_values(a: list[dict], b: list[dict], metric: str, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """The two files' per-example values of `metric`, paired example by example."""
    b = _aligned(a, b, names)
    if metric == "exact_match":
        differ = next(((ra, rb) for ra, rb in zip(a, b) if ra.get("scored_by") != rb.get("scored_by")), None)
        if differ is not None:
            raise MftlabError(
                f"'{names[0]}' scores exact match by {differ[0].get('scored_by')} and '{names[1]}' by "
                f"{differ[1].get('scored_by')} (example {differ[0]['index']}); evaluate both the same way "
                "(both with generation, or both with --no-generate)"
            )
    return _values(a, metric, names[0]), _values(b, metric, names[1])

"""The append-only store of a landscape run: one JSON line per finished grid point.

Files in the output folder:
- `landscape.run.json`: the run's configuration and provenance, written once (atomically) by
  process 0; `--resume` compares its `check` section with the new run's and refuses a mismatch.
- `landscape.points-<rank>.jsonl`: each process appends its own points, one line each, flushed
  and fsynced, so a kill loses at most the point being computed. A torn last line is dropped
  on resume. Floats are written with Python's shortest round-trip repr, so a resumed run
  reproduces the uninterrupted one exactly. A record is {"i", "x", "y", "train": [nll, tokens,
  correct], "test": [...], "norm", "seconds", "rank"}; `rank` (the process that computed the point)
  is absent in records of older versions, which load and resume all the same. Every process reads
  every shard, so a resume may use any number of processes.
The final `landscape.npz` / `landscape.json` are written from these by `mftlab.analysis.landscape`.
"""

from __future__ import annotations

import glob
import json
import os

from mftlab.errors import ConfigError, MftlabError
from mftlab.files.atomic import append_line, write_text_atomic
from mftlab.files.results import result_files

RUN_FILE = "landscape.run.json"
POINTS_PATTERN = "landscape.points-*.jsonl"
FINAL_FILES = (result_files("landscape").json, result_files("landscape").arrays)


def _read_lines(path: str) -> tuple[list[dict], bool]:
    """Valid records of one shard file, and whether anything (a torn line) was dropped."""
    records, dropped = [], False
    with open(path, encoding="utf-8") as f:
        text = f.read()
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            dropped = True
            continue
        if isinstance(record, dict) and "i" in record:
            records.append(record)
        else:
            dropped = True
    return records, dropped or (bool(text) and not text.endswith("\n"))


def _first_difference(old, new, prefix: str = "") -> str | None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(dict.fromkeys(list(old) + list(new))):
            found = _first_difference(old.get(key), new.get(key), f"{prefix}{key}.")
            if found:
                return found
        return None
    return None if old == new else f"{prefix[:-1]} (saved {json.dumps(old)[:80]}, now {json.dumps(new)[:80]})"


class PointStore:
    """Per-process append-only point records under `out_dir`."""

    def __init__(self, out_dir: str | os.PathLike, rank: int = 0):
        self.out_dir = os.fspath(out_dir)
        self.rank = rank
        self.path = os.path.join(self.out_dir, f"landscape.points-{rank}.jsonl")
        self._file = None

    # -- starting and resuming -----------------------------------------------------------
    def has_previous_run(self) -> bool:
        names = [RUN_FILE, *FINAL_FILES]
        return any(os.path.exists(os.path.join(self.out_dir, n)) for n in names) or bool(self.shard_paths())

    def shard_paths(self) -> list[str]:
        return sorted(glob.glob(os.path.join(glob.escape(self.out_dir), POINTS_PATTERN)))

    def check_run(self, run: dict, resume: bool) -> None:
        """Refuse to mix runs: an earlier run needs --resume, and --resume needs the same `check`."""
        run_path = os.path.join(self.out_dir, RUN_FILE)
        if os.path.exists(self.out_dir) and not os.path.isdir(self.out_dir):
            raise ConfigError(f"--out '{self.out_dir}' is a file; pass a folder for the results")
        if not resume:
            if self.has_previous_run():
                raise ConfigError(
                    f"--out '{self.out_dir}' already holds a landscape run; pass --resume to continue it "
                    "or choose a new --out"
                )
            return
        if not os.path.exists(run_path):
            if self.shard_paths():
                raise ConfigError(f"'{run_path}' is missing, so the saved points cannot be checked; use a new --out")
            return  # nothing to resume: a fresh start
        try:
            with open(run_path, encoding="utf-8") as f:
                saved = json.load(f)
        except ValueError:
            raise MftlabError(f"'{run_path}' is not valid JSON; remove the folder and start again") from None
        diff = _first_difference(saved.get("check"), run.get("check"))
        if diff:
            raise ConfigError(
                f"--resume: this run differs from the saved one in {diff}; use the saved run's options "
                "or choose a new --out"
            )

    def write_run(self, run: dict) -> None:
        """Process 0 writes the run file (only when absent, so resume keeps the original)."""
        run_path = os.path.join(self.out_dir, RUN_FILE)
        if not os.path.exists(run_path):
            write_text_atomic(run_path, json.dumps(run, indent=1) + "\n")

    def done(self) -> dict[int, dict]:
        """Every valid record of every process's shard, by point index (first one wins)."""
        found: dict[int, dict] = {}
        for path in self.shard_paths():
            for record in _read_lines(path)[0]:
                found.setdefault(int(record["i"]), record)
        return found

    # -- appending -------------------------------------------------------------------------
    def open(self) -> None:
        """Open this process's shard for appending, first dropping a torn last line."""
        if os.path.exists(self.path):
            records, dropped = _read_lines(self.path)
            if dropped:
                write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in records))
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, record: dict) -> None:
        append_line(self._file, json.dumps(record))
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

"""A long run's state and its ETA, in OUT/progress.json, rewritten at every step header.

    state = RunState(out, "protocol", total=49, plan=[(folder, kind, seconds), ...])
    state.begin(3, "math (seed 0): FFT from the backbone")   # -> the ETA of the whole run (or None)
    state.measured("train", "seed-0/math/fft", 812.0)         # a step that ran, from its runner
    state.finish() / state.fail("Error: ...")

The ETA sums, over the planned steps not done yet (those after the last step that ran), each one's
planned seconds scaled by how fast the finished steps of the same kind ran against their plan
(measured / planned; any kind's ratio when this kind has not run yet; the plan's own time before any
step has run). Steps the plan has no time for take the mean measured time of their kind. Without a
plan: the mean time per header so far times the headers left. `mftlab status OUT` reads the file
(and the folder lock's pid) without taking the lock.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass

from mftlab.files.atomic import write_text_atomic
from mftlab.files.results import read_json_lines

PROGRESS = "progress.json"


@dataclass(frozen=True)
class PlannedStep:
    folder: str  # relative to OUT, the key step records use
    kind: str
    seconds: float | None


def _done_folders(out: str) -> set[str]:
    """Step folders already recorded in OUT/steps.jsonl (by this run or an earlier one)."""
    rows = read_json_lines(os.path.join(out, "steps.jsonl"))
    return {row["folder"] for row in rows if isinstance(row, dict) and "folder" in row}


class RunState:
    def __init__(self, out: str, command: str, total: int, plan: list[PlannedStep] | None = None):
        self.out, self.command, self.total = out, command, total
        self.plan = list(plan or [])
        self.started = time.time()
        self.done_folders = _done_folders(out)
        self.measurements: list[tuple[str, str, float]] = []  # (kind, folder, seconds) run by this process
        self.headers: list[dict] = []
        self.state = "running"
        self.error: str | None = None
        self.folder: str | None = None  # the running step's folder (relative to OUT), when a runner said
        self.eta_seconds: float | None = None

    # -- what happened -----------------------------------------------------------------------------
    def running(self, folder: str) -> None:
        """A step starts computing in `folder` (relative to OUT): `mftlab status` shows its log and metrics."""
        self.folder = folder
        self._write(self.eta_seconds)

    def measured(self, kind: str, folder: str, seconds: float) -> None:
        self.measurements.append((kind, folder, seconds))
        self.done_folders.add(folder)

    def begin(self, step: int, message: str) -> float | None:
        """Step `step` of `total` starts; returns the ETA of the whole run (seconds) and writes progress.json."""
        now = time.time()
        if self.headers:
            self.headers[-1]["seconds"] = round(now - self.headers[-1]["started"], 1)
        self.headers.append({"step": step, "message": message, "started": now})
        self.folder = None
        self.eta_seconds = self.eta()
        self._write(self.eta_seconds)
        return self.eta_seconds

    def finish(self) -> None:
        self._close("done")

    def fail(self, error: str) -> None:
        self.error = error
        self._close("failed")

    def _close(self, state: str) -> None:
        if self.headers and "seconds" not in self.headers[-1]:
            self.headers[-1]["seconds"] = round(time.time() - self.headers[-1]["started"], 1)
        self.state = state
        self._write(0.0 if state == "done" else None)

    # -- the estimate ------------------------------------------------------------------------------
    def _ratio(self, kind: str | None) -> float | None:
        planned = {s.folder: s.seconds for s in self.plan if s.seconds}
        pairs = [(sec, planned[f]) for k, f, sec in self.measurements if f in planned and (kind is None or k == kind)]
        return sum(a for a, _ in pairs) / sum(p for _, p in pairs) if pairs else None

    def _mean(self, kind: str | None) -> float | None:
        times = [sec for k, _, sec in self.measurements if kind is None or k == kind]
        return sum(times) / len(times) if times else None

    def eta(self) -> float | None:
        # steps before the last one that ran are behind us too (masks and analyses keep no record)
        reached = max((i for i, s in enumerate(self.plan) if s.folder in self.done_folders), default=-1)
        left = [s for s in self.plan[reached + 1 :] if s.folder not in self.done_folders]
        if self.plan:
            guesses = []
            for s in left:
                ratio = self._ratio(s.kind) or self._ratio(None)
                guess = s.seconds * (ratio if ratio is not None else 1.0) if s.seconds else None
                guesses.append(guess if guess is not None else self._mean(s.kind))
            known = [g for g in guesses if g is not None]
            # steps without a planned time (masks, analyses) count once their kind has run
            return sum(known) if known or not left or self.measurements else None
        if len(self.headers) < 2:
            return None
        per_header = (self.headers[-1]["started"] - self.started) / (len(self.headers) - 1)
        return per_header * (self.total - len(self.headers) + 1)

    # -- the file ----------------------------------------------------------------------------------
    def _write(self, eta: float | None) -> None:
        current = self.headers[-1] if self.headers else None
        data = {
            "command": self.command,
            "pid": os.getpid(),
            "state": self.state,
            "started": self.started,
            "updated": time.time(),
            "step": current["step"] if current else 0,
            "total": self.total,
            "current": current["message"] if current and self.state != "done" else None,
            "folder": self.folder,
            "eta_seconds": None if eta is None else round(eta, 1),
            "finished": [
                {"step": h["step"], "message": h["message"], "seconds": h["seconds"]}
                for h in self.headers
                if "seconds" in h and (h is not current or self.state == "done")
            ],
            "error": self.error,
        }
        if self.state == "failed" and current:
            data["failed_step"] = current["message"]
        os.makedirs(self.out, exist_ok=True)
        write_text_atomic(os.path.join(self.out, PROGRESS), json.dumps(data, indent=1) + "\n")

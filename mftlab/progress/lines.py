"""One running task's progress: a tqdm bar on a terminal, plain lines in a log file or a cluster job.

    with ProgressLine("math: full fine-tuning", total=120, unit="step") as line:
        for step in ...:
            line.update(step + 1, loss=1.23)          # bar redrawn; plain line at most every 30 s
        line.update(120, eval=1.31, force=True)      # an evaluation: always a plain line

Plain lines read `  math: full fine-tuning: step 40/120 (33%), loss 1.23, 0:12 elapsed, ETA 0:24`, the
first after 30 s (a task that ends sooner prints none), and go to stderr (never stdout, so `--json`
output stays clean). MFTLAB_PROGRESS=plain forces plain lines (MFTLAB_PROGRESS_SECONDS: their
interval, default 30), which is how a launched step reports back to the protocol (recipes.launch
forwards the lines that start with PREFIX); MFTLAB_PROGRESS=off silences it. The library shows
nothing until `enable()` (the `mftlab` command calls it), so Python users' programs stay quiet.
"""

from __future__ import annotations

import os
import sys
import time

PREFIX = "progress: "  # plain lines of a launched step start with this (recipes.launch forwards them)
INTERVAL = 30.0
_enabled = {"on": False}  # the library prints nothing unless a command (or the user) turns progress on


def enable(on: bool = True) -> None:
    """Show progress lines in this process (every `mftlab` command does; Python users may)."""
    _enabled["on"] = on


def callback(label: str, unit: str):
    """A `progress(done, total)` function (the analysis modules' kind) drawing one line, made on first call."""
    state = {"line": None}

    def report(done: int, total: int) -> None:
        if state["line"] is None:
            state["line"] = ProgressLine(label, total, unit)
        state["line"].update(done)
        if done >= total:
            state["line"].close()

    return report


def clock(seconds: float | None) -> str:
    """1:02:03 / 2:03 / ?"""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _mode(stream) -> str:
    chosen = os.environ.get("MFTLAB_PROGRESS", "")
    if chosen in ("plain", "off", "bar"):
        return chosen
    if not _enabled["on"]:
        return "off"
    return "bar" if getattr(stream, "isatty", lambda: False)() else "plain"


def _interval() -> float:
    try:
        return float(os.environ.get("MFTLAB_PROGRESS_SECONDS", INTERVAL))
    except ValueError:
        return INTERVAL


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class ProgressLine:
    """Progress of one task with a known total (steps, examples, tokens, points)."""

    def __init__(self, label: str, total: int, unit: str = "it", initial: int = 0, stream=None, echo=None):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.echo = echo  # where plain lines go instead of the stream (the protocol's own output)
        self.mode = _mode(self.stream) if echo is None else "plain"
        if os.environ.get("MFTLAB_PROGRESS") == "off":
            self.mode = "off"
        self.interval = _interval()
        self.started = time.monotonic()
        self.first = initial  # done before this process started (a resumed run): not in the speed
        self.done = initial
        self.last_line = None
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=initial, unit=unit, desc=label, file=self.stream, leave=False)

    def __enter__(self) -> "ProgressLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def eta(self) -> float | None:
        """Seconds left at the speed so far (None before any progress)."""
        moved = self.done - self.first
        if moved <= 0:
            return None
        return (time.monotonic() - self.started) / moved * max(self.total - self.done, 0)

    def line(self, **values) -> str:
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        extra = "".join(f", {k} {_value(v)}" for k, v in values.items() if v is not None)
        elapsed, left = clock(time.monotonic() - self.started), clock(self.eta())
        return f"{self.label}: {self.unit} {self.done}/{self.total}{pct}{extra}, {elapsed} elapsed, ETA {left}"

    def update(self, done: int, force: bool = False, **values) -> None:
        """Progress to `done` of total, with named numbers (loss=..., eval=...); `force`: a plain line now."""
        self.done = min(int(done), self.total) if self.total else int(done)
        if self.mode == "bar":
            self.bar.update(self.done - self.bar.n)
            if values:
                self.bar.set_postfix({k: _value(v) for k, v in values.items() if v is not None}, refresh=False)
            return
        now = time.monotonic()
        due = now - (self.last_line or self.started) >= self.interval
        finished = self.done >= self.total and self.last_line is not None  # a task that showed progress ends
        if self.mode == "plain" and (force or due or finished):
            self.last_line = now
            self._say(self.line(**values))

    def note(self, text: str) -> None:
        """A message between progress updates (a warning, a checkpoint), without breaking the bar."""
        if self.mode == "bar":
            self.bar.write(text, file=self.stream)
        elif self.mode == "plain":
            self._say(text)

    def _say(self, text: str) -> None:
        if self.echo is not None:
            self.echo(text)
        else:
            print(PREFIX + text if os.environ.get("MFTLAB_PROGRESS") == "plain" else text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

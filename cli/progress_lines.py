"""Progress on the command line: the library's progress events (mftlab.progress.events) drawn as a tqdm
bar on a terminal, or as plain lines in a log file or a cluster job.

    display = Display()                       # one per command
    display(StepProgress(...)) / display(StepNote(...))
    callback("stats", "tensor")               # a progress(done, total) function drawing one line

Plain lines read `  math: full fine-tuning: step 40/120 (33%), loss 1.23, 0:12 elapsed, ETA 0:24`: the
first after 30 s (a task that ends sooner prints none), then at most one every 30 s, plus one for
each forced event (an evaluation). Everything goes to stderr, so `--json` output stays clean.
Environment: MFTLAB_PROGRESS=plain|bar|off chooses (plain also prefixes every line with PREFIX: how a
step launched by `mftlab protocol` reports back through its launcher), MFTLAB_PROGRESS_SECONDS the
interval (default 30), MFTLAB_PROGRESS_LABEL the label of a launched training step.
"""

from __future__ import annotations

import os
import sys
import time

from mftlab.progress.events import PREFIX, StepNote, StepProgress, clock, counter

INTERVAL = 30.0


def _mode(stream) -> str:
    chosen = os.environ.get("MFTLAB_PROGRESS", "")
    if chosen in ("plain", "off", "bar"):
        return chosen
    return "bar" if getattr(stream, "isatty", lambda: False)() else "plain"


def _interval() -> float:
    try:
        return float(os.environ.get("MFTLAB_PROGRESS_SECONDS", INTERVAL))
    except ValueError:
        return INTERVAL


def _value(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _say(text: str, stream) -> None:
    print(PREFIX + text if os.environ.get("MFTLAB_PROGRESS") == "plain" else text, file=stream, flush=True)


class ProgressLine:
    """Progress of one task with a known total (steps, examples, tokens, points)."""

    def __init__(self, label: str, total: int, unit: str = "it", first: int = 0, stream=None):
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.mode = _mode(self.stream)
        self.interval = _interval()
        self.started = time.monotonic()
        self.first = first  # done before this process started (a resumed run): not in the speed
        self.done = first
        self.last_line = None
        self.bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=first, unit=unit, desc=label, file=self.stream, leave=False)

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
        """Progress to `done` of total, with named numbers (loss=..., eval_loss=...); `force`: a line now."""
        self.done = min(int(done), self.total) if self.total else int(done)
        if self.mode == "bar":
            self.bar.update(self.done - self.bar.n)
            shown = {k: _value(v) for k, v in values.items() if v is not None}
            if shown:
                self.bar.set_postfix(shown, refresh=False)
            return
        now = time.monotonic()
        due = now - (self.last_line or self.started) >= self.interval
        finished = self.done >= self.total and self.last_line is not None  # a task that showed progress ends
        if self.mode == "plain" and (force or due or finished):
            self.last_line = now
            _say(self.line(**values), self.stream)

    def note(self, text: str) -> None:
        """A message between updates (a warning), without breaking the bar."""
        if self.mode == "bar":
            self.bar.write(text, file=self.stream)
        elif self.mode == "plain":
            _say(text, self.stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Display:
    """Draws progress events: one ProgressLine per task label, closed when its task is done."""

    def __init__(self, indent: str = "", stream=None):
        self.indent, self.stream = indent, stream or sys.stderr
        self.lines: dict[str, ProgressLine] = {}

    def __call__(self, event) -> None:
        if isinstance(event, StepProgress):
            line = self.lines.get(event.label)
            if line is None or event.done < line.done:  # a new task under the same label starts over
                if line is not None:
                    line.close()
                line = self.lines[event.label] = ProgressLine(
                    self.indent + event.label, event.total, event.unit, event.first, self.stream
                )
            line.update(event.done, event.force, **event.values)
            if event.total and event.done >= event.total and not event.force:
                self.lines.pop(event.label).close()
        elif isinstance(event, StepNote):
            line = self.lines.get(event.label)
            text = self.indent + event.text
            if line is not None and line.bar is not None:
                line.note(text)
            elif _mode(self.stream) != "off":
                _say(text, self.stream)


def callback(label: str, unit: str, display: Display | None = None):
    """A `progress(done, total)` function (the analysis modules' kind) drawing one line."""
    return counter(display or Display(), label, unit)

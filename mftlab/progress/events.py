"""What long-running library code reports, through the callback its caller passes (the library never prints).

    report(StepProgress("math (seed 0): full fine-tuning", "step", 40, 120, {"loss": 1.23}))
    report(StepNote("math (seed 0): full fine-tuning", "warning: ..."))

The CLI turns these into a bar on a terminal or plain lines in a log (cli/progress_lines.py). A step
launched in its own processes prints its lines with PREFIX (MFTLAB_PROGRESS=plain), and the launcher
(recipes.launch) passes each such line back as a StepNote, so it reaches the protocol's output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREFIX = "progress: "  # the plain lines of a launched step start with this


@dataclass(frozen=True)
class StepProgress:
    """`done` of `total` `unit`s of one task (steps, examples, tokens, points), with named numbers."""

    label: str
    unit: str
    done: int
    total: int
    values: dict = field(default_factory=dict)
    force: bool = False  # e.g. an evaluation: worth a line now, whatever the interval
    first: int = 0  # done before this process started (a resumed run): not part of the speed


@dataclass(frozen=True)
class StepNote:
    """A message from inside a task (a warning, or a launched step's progress line, already in words)."""

    label: str
    text: str


def clock(seconds: float | None) -> str:
    """1:02:03 / 2:03 / ?"""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def counter(report, label: str, unit: str):
    """A `progress(done, total)` function (the analysis modules' kind) that reports StepProgress events."""
    return lambda done, total: report(StepProgress(label, unit, done, total))

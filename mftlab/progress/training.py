"""Training events (mftlab.training.loop.TrainProgress) as one progress line: steps, loss, last eval loss, ETA.

    train(config, progress=TrainingLine("math (seed 0): full fine-tuning"))

A bar on a terminal; otherwise a plain line at most every 30 s and at each evaluation (see lines.py).
Warnings go through the line too, so they are not lost under a bar.
"""

from __future__ import annotations

import sys

from mftlab.progress.lines import ProgressLine


class TrainingLine:
    def __init__(self, label: str, echo=None):
        self.label, self.echo = label, echo
        self.line: ProgressLine | None = None
        self.loss: float | None = None
        self.eval_loss: float | None = None

    def __call__(self, event) -> None:
        if event.event == "start":
            self.line = ProgressLine(self.label, event.total_steps, "step", initial=event.step, echo=self.echo)
        elif event.event == "eval" and event.metrics.get("loss") is not None:
            self.eval_loss = event.metrics["loss"]
            if self.line is not None:  # the step-0 evaluation comes before "start"
                self.line.update(event.step, force=True, loss=self.loss, eval_loss=self.eval_loss)
        elif event.event == "step" and self.line is not None:
            self.loss = event.metrics.get("loss")
            self.line.update(event.step, loss=self.loss, eval_loss=self.eval_loss)
        elif event.event == "warning" and event.message:
            (self.line.note if self.line is not None else self._say)(f"warning: {event.message}")
        elif event.event == "done" and self.line is not None:
            self.line.close()

    def _say(self, text: str) -> None:
        (self.echo or (lambda t: print(t, file=sys.stderr, flush=True)))(text)

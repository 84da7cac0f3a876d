"""Training events (mftlab.training.loop.TrainProgress) as progress events of one task: steps, loss,
last eval loss; each evaluation is worth a line of its own (`force`).

    train(config, progress=training_events("math (seed 0): full fine-tuning", report))
"""

from __future__ import annotations

from mftlab.progress.events import StepNote, StepProgress


def training_events(label: str, report):
    """A TrainProgress callback that reports StepProgress / StepNote events to `report`."""
    state = {"loss": None, "eval_loss": None, "total": None, "first": 0}

    def values() -> dict:
        return {"loss": state["loss"], "eval_loss": state["eval_loss"]}

    def on_event(event) -> None:
        if event.event == "start":
            state.update(total=event.total_steps, first=event.step)
        elif event.event == "eval" and event.metrics.get("loss") is not None:
            state["eval_loss"] = event.metrics["loss"]
            if state["total"] is not None:  # the step-0 evaluation comes before "start"
                report(StepProgress(label, "step", event.step, state["total"], values(), True, state["first"]))
        elif event.event == "step" and state["total"] is not None:
            state["loss"] = event.metrics.get("loss")
            report(StepProgress(label, "step", event.step, state["total"], values(), False, state["first"]))
        elif event.event == "warning" and event.message:
            report(StepNote(label, event.message))  # already "warning: ..."

    return on_event

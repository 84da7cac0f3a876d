"""Experiment trackers (`--report-to tensorboard,wandb,mlflow`): the rows of metrics.jsonl, sent on.

Uses accelerate's tracker classes directly, so the training loop needs only three calls:
`RunTrackers(config)` at the start (main process), `.log(row)` wherever a metrics row is written,
`.finish()` at the end. TensorBoard writes to OUT/logs/, MLflow to OUT/mlruns/ (unless
MLFLOW_TRACKING_URI says otherwise), Weights & Biases wherever its own settings say (WANDB_MODE,
WANDB_DIR, ...). The packages are optional extras; a missing one is a one-line ConfigError.
"""

from __future__ import annotations

import importlib.util
import os

from mftlab.errors import ConfigError

REPORT_TO = ("tensorboard", "wandb", "mlflow")
LOG_DIR = "logs"


def parse_report_to(text: str | None) -> tuple[str, ...]:
    """'tensorboard,wandb' -> ('tensorboard', 'wandb'); None, '' and 'none' -> ()."""
    names = tuple(n.strip().lower() for n in (text or "").split(",") if n.strip())
    if names in ((), ("none",)):
        return ()
    for name in names:
        if name not in REPORT_TO:
            raise ConfigError.for_option(
                "report_to",
                text,
                f"names unknown tracker '{name}'; choose from {', '.join(REPORT_TO)} (comma-separated) or none",
                quote=True,
            )
    return tuple(dict.fromkeys(names))


def check_report_to(text: str | None) -> tuple[str, ...]:
    """The trackers asked for, after checking that their packages are installed (before any work)."""
    names = parse_report_to(text)
    for name in names:
        if importlib.util.find_spec(name) is None:
            raise ConfigError.for_option(
                "report_to", name, f"needs the {name} package; install it with `pip install 'mftlab[{name}]'`"
            )
    return names


def _hparams(config: dict) -> dict:
    # Trackers take scalars and strings only; None and lists become text.
    return {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in config.items()}


class RunTrackers:
    """The trackers of one training run (create on the main process only)."""

    def __init__(self, report_to: str | None, out_dir: str, config: dict):
        from accelerate.tracking import MLflowTracker, TensorBoardTracker, WandBTracker

        run_name = os.path.basename(os.path.abspath(out_dir))
        self.trackers = []
        for name in check_report_to(report_to):
            if name == "tensorboard":
                tracker = TensorBoardTracker(".", logging_dir=os.path.join(out_dir, LOG_DIR))
            elif name == "wandb":
                tracker = WandBTracker(run_name)
            else:
                if "MLFLOW_TRACKING_URI" not in os.environ:  # the user's own tracking server wins
                    import mlflow

                    mlflow.set_tracking_uri("file:" + os.path.abspath(os.path.join(out_dir, "mlruns")))
                tracker = MLflowTracker(experiment_name=run_name, run_name=run_name)
            tracker.main_process_only = False  # the caller already runs on the main process only
            tracker.start()
            tracker.store_init_configuration(_hparams(config))
            self.trackers.append(tracker)

    def log(self, row: dict) -> None:
        """One metrics row ({"step": ..., "loss": ..., ...}); numbers only, at row["step"]."""
        values = {
            k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for tracker in self.trackers:
            tracker.log(values, step=row["step"])

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish()
        self.trackers = []

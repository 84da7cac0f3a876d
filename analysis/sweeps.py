"""Ablation sweeps of MFT (the paper's Figures 3-5), for any model and data.

- `layers`: MFT on consecutive groups of `group_size` layers, shallow to deep (Figure 3 / 7);
- `ratio`: mask ratios (Figure 4 / 8);
- `data`: fractions of the training data (Figure 5 / 9).

Every point is one MFT run from the same fine-tuned model, scored on `eval_data` with the one
evaluation function; the model itself (the FFT line) is scored once for reference. Each point is
cached in `out/points/<name>/` (its `result.json` is written last), so a killed or repeated sweep
only runs the missing points. Results: `out/sweep.json` and `out/sweep.csv`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable

from mftlab import __version__
from mftlab.analysis import protocol_steps as steps
from mftlab.analysis.results import write_csv, write_json
from mftlab.data import load_examples
from mftlab.errors import ConfigError
from mftlab.evaluation import evaluate
from mftlab.models import load_model
from mftlab.selection import check_ratio
from mftlab.train_config import TrainConfig

AXES = ("layers", "ratio", "data")
DEFAULT_RATIOS = (0.02, 0.05, 0.1, 0.2, 0.4)
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class SweepConfig:
    axis: str
    train: TrainConfig  # the MFT run every point starts from (model = the fine-tuned model)
    eval_data: str
    group_size: int = 4
    ratios: tuple[float, ...] = DEFAULT_RATIOS
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    mftlab_version: str = __version__

    def __post_init__(self):
        if self.axis not in AXES:
            raise ConfigError(f"sweep '{self.axis}' is unknown; choose one of {', '.join(AXES)}")
        if self.train.method != "mask":
            raise ConfigError("sweeps vary MFT runs; use --method mask")
        if self.group_size < 1:
            raise ConfigError(f"--group-size {self.group_size} must be at least 1 (the paper uses 4 and 8)")
        for r in self.ratios:
            check_ratio(r)
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"--fractions value {f} is outside (0, 1]; use e.g. 0.1,0.5,1")
        if not os.path.exists(self.eval_data):
            raise ConfigError(f"--eval-data '{self.eval_data}' does not exist; pass the held-out data to score on")


def _model_options(train: TrainConfig) -> dict:
    return {"dtype": train.dtype, "gguf_file": train.gguf_file, "trust_remote_code": train.trust_remote_code}


def num_layers(model_source: str, **load) -> int:
    """Number of decoder layers, from the model's config."""
    config = load_model(model_source, **load).model.config
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None)
    if not layers:
        raise ConfigError(f"cannot tell how many layers '{model_source}' has; use the ratio or data sweep")
    return int(layers)


def sweep_points(config: SweepConfig) -> list[dict]:
    """[{name, label, value, overrides}] in sweep order."""
    if config.axis == "layers":
        n = num_layers(config.train.model, **_model_options(config.train))
        if config.group_size > n:
            raise ConfigError(f"--group-size {config.group_size} exceeds the model's {n} layers; use at most {n}")
        return [{"name": f"layers-{i}-{i + config.group_size - 1}", "label": f"{i}-{i + config.group_size - 1}",
                 "value": i, "overrides": {"layers": f"{i}-{i + config.group_size - 1}"}}
                for i in range(0, n - config.group_size + 1, config.group_size)]
    if config.axis == "ratio":
        return [{"name": f"ratio-{r}", "label": f"{r:g}", "value": r, "overrides": {"mask_ratio": r}}
                for r in config.ratios]
    return [{"name": f"data-{f}", "label": f"{f:g}", "value": f, "overrides": {"data_fraction": f}}
            for f in config.fractions]


def _score(model, tokenizer, eval_data: str, max_seq_len: int) -> dict:
    examples, _ = load_examples(eval_data, tokenizer, max_seq_len)
    r = evaluate(model, tokenizer, examples, batch_size=64, generate=False)
    return {"loss": r.loss, "answer_accuracy": r.answer_accuracy, "token_accuracy": r.token_accuracy}


def run_sweep(config: SweepConfig, out: str, progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run (or finish) the sweep; returns the dict written to `out/sweep.json`."""
    points = sweep_points(config)
    say = progress or (lambda done, total, message: None)
    os.makedirs(out, exist_ok=True)
    reference_dir = os.path.join(out, "reference")
    reference = steps.cached(reference_dir)
    if reference is None:
        say(0, len(points), "scoring the starting model (the FFT line)")
        loaded = load_model(config.train.model, **_model_options(config.train))
        reference = steps.finish(reference_dir, _score(loaded.model, loaded.tokenizer, config.eval_data,
                                                       config.train.max_seq_len))
    rows = []
    for k, point in enumerate(points):
        folder = os.path.join(out, "points", point["name"])
        say(k, len(points), f"MFT with {config.axis} = {point['label']}")
        result = steps.cached(folder)
        if result is None:
            run_dir = os.path.join(folder, "run")
            steps.fresh(folder)
            run = steps.run_training(run_dir, replace(config.train, out=run_dir, resume=False, **point["overrides"]))
            model, tokenizer = steps.load_method_model(config.train.model, run["output"], **_model_options(config.train))
            result = steps.finish(folder, {**_score(model, tokenizer, config.eval_data, config.train.max_seq_len),
                                           "mask_ratio": run["mask_ratio"], "steps": run["steps"]})
        rows.append({"name": point["name"], "label": point["label"], "value": point["value"], **result})
    say(len(points), len(points), "done")
    doc = {"kind": "sweep", "mftlab_version": __version__, "axis": config.axis, "points": rows, "reference": reference,
           "config": {"axis": config.axis, "group_size": config.group_size, "ratios": list(config.ratios),
                      "fractions": list(config.fractions), "eval_data": config.eval_data,
                      "train": config.train.to_dict()}}
    write_json(os.path.join(out, "sweep.json"), doc)
    write_csv(os.path.join(out, "sweep.csv"), rows)
    return doc

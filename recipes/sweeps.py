"""Ablation sweeps of MFT (the paper's Figures 3-5), for any model and data.

- `layers`: MFT on consecutive groups of `group_size` layers, shallow to deep (Figure 3 / 7);
- `ratio`: mask ratios (Figure 4 / 8);
- `data`: fractions of the training data (Figure 5 / 9);
- `score-lr`: learning rates of the mask scores (the method's own knob: too small leaves the
  step-0 prune in place, too large scrambles the mask);
- `score-init`: score initialisations (`random`: the step-0 mask is a random prune;
  `magnitude`: it is the magnitude mask).

Every point is one MFT run from the same fine-tuned model, scored on `eval_data` with the one
evaluation function (and on `test_data` when given); the model itself (the FFT line) is scored
once for reference. The selected point is the one with the lowest *validation* loss
(recipes.choose); test numbers are reported beside it and never used to choose. Each point is
cached in `out/points/<name>/` (its `result.json` is written last), so a killed or repeated sweep
only runs the missing points. Results: `out/sweep.json`, `out/sweep.csv` and `out/sweep.md` (a
table that marks the selected point).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Callable

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.files.atomic import write_text_atomic
from mftlab.files.results import header, write_result
from mftlab.mft.masking import SCORE_INITS
from mftlab.mft.selection import check_ratio
from mftlab.models.device import resolve_device
from mftlab.models.loading import load_model
from mftlab.options_meta import doc, unknown_choice
from mftlab.progress.training import training_events
from mftlab.recipes import steps
from mftlab.recipes.choose import best_on_validation
from mftlab.training.config import TrainConfig
from mftlab.training.data import load_examples
from mftlab.training.evaluation import evaluate

AXES = ("layers", "ratio", "data", "score-lr", "score-init")
DEFAULT_RATIOS = (0.02, 0.05, 0.1, 0.2, 0.4)
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 1.0)
DEFAULT_SCORE_LRS = (1e-4, 1e-3, 1e-2)
DEFAULT_SCORE_INITS = ("random", "magnitude")


@dataclass(frozen=True)
class SweepConfig:
    axis: str
    train: TrainConfig  # the MFT run every point starts from (model = the fine-tuned model)
    eval_data: str = field(metadata=doc("Validation data every point is scored on (and selected on)."))
    group_size: int = field(default=4, metadata=doc("layers: consecutive layers per group."))
    ratios: tuple[float, ...] = field(default=DEFAULT_RATIOS, metadata=doc("ratio: mask ratios to try."))
    fractions: tuple[float, ...] = field(default=DEFAULT_FRACTIONS, metadata=doc("data: data fractions to try."))
    score_lrs: tuple[float, ...] = field(
        default=DEFAULT_SCORE_LRS, metadata=doc("score-lr: score learning rates to try.")
    )
    score_inits: tuple[str, ...] = field(
        default=DEFAULT_SCORE_INITS, metadata=doc("score-init: initialisations to try (random, magnitude, uniform).")
    )
    test_data: str | None = field(
        default=None, metadata=doc("Test data, scored and reported beside each point; never used to select.")
    )
    mftlab_version: str = __version__

    def __post_init__(self):
        if self.axis not in AXES:
            raise ConfigError(f"sweep '{self.axis}' {unknown_choice(AXES)}")
        if self.train.method != "mask":
            raise ConfigError("sweeps vary MFT runs; use --method mask")
        if self.group_size < 1:
            raise ConfigError(f"--group-size {self.group_size} must be at least 1 (the paper uses 4 and 8)")
        for r in self.ratios:
            check_ratio(r)
        for f in self.fractions:
            if not 0.0 < f <= 1.0:
                raise ConfigError(f"--fractions value {f} is outside (0, 1]; use e.g. 0.1,0.5,1")
        for lr in self.score_lrs:
            if not lr > 0:
                raise ConfigError(f"--score-lrs value {lr} must be positive; use e.g. 1e-4,1e-3,1e-2")
        for init in self.score_inits:
            if init not in SCORE_INITS:
                raise ConfigError(f"--score-inits value '{init}' is unknown; choose from {', '.join(SCORE_INITS)}")
        if not os.path.exists(self.eval_data):
            raise ConfigError(f"--eval-data '{self.eval_data}' does not exist; pass the held-out data to score on")
        if self.test_data is not None and not os.path.exists(self.test_data):
            raise ConfigError(f"--test-data '{self.test_data}' does not exist; pass the test split or leave it out")


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
        return [
            {
                "name": f"layers-{i}-{i + config.group_size - 1}",
                "label": f"{i}-{i + config.group_size - 1}",
                "value": i,
                "overrides": {"layers": f"{i}-{i + config.group_size - 1}"},
            }
            for i in range(0, n - config.group_size + 1, config.group_size)
        ]
    if config.axis == "ratio":
        return [
            {"name": f"ratio-{r}", "label": f"{r:g}", "value": r, "overrides": {"mask_ratio": r}} for r in config.ratios
        ]
    if config.axis == "score-lr":
        return [
            {"name": f"score-lr-{lr:g}", "label": f"{lr:g}", "value": lr, "overrides": {"score_lr": lr}}
            for lr in config.score_lrs
        ]
    if config.axis == "score-init":
        return [
            {"name": f"score-init-{init}", "label": init, "value": init, "overrides": {"score_init": init}}
            for init in config.score_inits
        ]
    return [
        {"name": f"data-{f}", "label": f"{f:g}", "value": f, "overrides": {"data_fraction": f}}
        for f in config.fractions
    ]


def _score_one(model, tokenizer, data: str, max_seq_len: int, device) -> dict:
    examples, _ = load_examples(data, tokenizer, max_seq_len)
    r = evaluate(model, tokenizer, examples, batch_size=64, generate=False, device=device)
    return {"loss": r.loss, "answer_accuracy": r.answer_accuracy, "token_accuracy": r.token_accuracy}


def _score(config: SweepConfig, mask_path: str | None = None) -> dict:
    """Validation scores (`loss`, ...) of the model (with `mask_path` applied) and, with test data,
    `test_loss`, ... beside them; computed on `config.train.device`, the model let go on return."""
    device = resolve_device(config.train.device)
    model, tokenizer = steps.load_method_model(
        config.train.model, mask_path, device=device, **_model_options(config.train)
    )
    scores = _score_one(model, tokenizer, config.eval_data, config.train.max_seq_len, device)
    if config.test_data:
        test = _score_one(model, tokenizer, config.test_data, config.train.max_seq_len, device)
        scores.update({f"test_{k}": v for k, v in test.items()})
    return scores


def select_point(rows: list[dict]) -> int:
    """Index of the selected point: the lowest validation loss (`loss`); test numbers are not read."""
    return best_on_validation(rows, key="loss")


def _step0_loss(run: dict) -> float | None:
    """Validation loss of the run's step-0 mask (logged by the trainer), or None."""
    return next((p["eval_loss"] for p in run.get("curve", []) if p["step"] == 0), None)


def _fmt(value, percent=False) -> str:
    if value is None:
        return "n/a"
    return f"{100 * value:.1f}%" if percent else f"{value:.4f}"


def sweep_table(doc: dict) -> list[list[str]]:
    """The sweep as rows of text (header first); the selected point is marked."""
    test = any("test_loss" in p for p in doc["points"])
    head = [doc["axis"], "validation loss", "validation answer acc.", "step-0 validation loss"]
    head += ["test loss", "test answer acc."] if test else []
    rows = [head + ["selected"]]
    ref = doc["reference"]
    rows.append(
        ["starting model"]
        + [_fmt(ref["loss"]), _fmt(ref["answer_accuracy"], True), "n/a"]
        + ([_fmt(ref.get("test_loss")), _fmt(ref.get("test_answer_accuracy"), True)] if test else [])
        + [""]
    )
    for p in doc["points"]:
        row = [p["label"], _fmt(p["loss"]), _fmt(p["answer_accuracy"], True), _fmt(p.get("step0_loss"))]
        row += [_fmt(p.get("test_loss")), _fmt(p.get("test_answer_accuracy"), True)] if test else []
        rows.append(row + ["**selected** (best validation loss)" if p.get("selected") else ""])
    return rows


def markdown(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows[1:]]) + "\n"


def _run_point(config: SweepConfig, point: dict, folder: str, report) -> dict:
    """One point's MFT run and its scores (cached in `folder`, so a finished point is not run again)."""
    result = steps.cached(folder)
    if result is not None:
        return result
    run_dir = os.path.join(folder, "run")
    steps.fresh(folder)
    # With eval data the trainer also logs the step-0 mask's validation loss (the initial prune).
    train = replace(
        config.train,
        out=run_dir,
        resume=False,
        eval_data=config.train.eval_data or config.eval_data,
        **point["overrides"],
    )
    run = steps.run_training(run_dir, train, training_events(f"{config.axis} = {point['label']}", report))
    scores = {
        **_score(config, run["output"]),
        "step0_loss": _step0_loss(run),
        "mask_ratio": run["mask_ratio"],
        "steps": run["steps"],
    }
    return steps.finish(folder, scores)


def _sweep_doc(config: SweepConfig, rows: list[dict], reference: dict, chosen: int) -> dict:
    """sweep.json: the points (the chosen one marked), the starting model's scores and the sweep's config."""
    for i, row in enumerate(rows):
        row["selected"] = i == chosen
    return {
        **header("sweep"),
        "axis": config.axis,
        "points": rows,
        "reference": reference,
        "selected": rows[chosen]["name"],
        "selected_on": "validation loss (test numbers are not used to choose)",
        "config": {
            "axis": config.axis,
            "group_size": config.group_size,
            "ratios": list(config.ratios),
            "fractions": list(config.fractions),
            "score_lrs": list(config.score_lrs),
            "score_inits": list(config.score_inits),
            "eval_data": config.eval_data,
            "test_data": config.test_data,
            "train": config.train.to_dict(),
        },
    }


def run_sweep(
    config: SweepConfig, out: str, progress: Callable[[int, int, str], None] | None = None, report=None
) -> dict:
    """Run (or finish) the sweep; returns the dict written to `out/sweep.json`. `progress(done, total,
    message)` before each point; `report` gets the running point's training progress events."""
    report = report or (lambda event: None)
    resolve_device(config.train.device)  # a GPU that is not there is reported before any work
    points = sweep_points(config)
    say = progress or (lambda done, total, message: None)
    os.makedirs(out, exist_ok=True)
    reference_dir = os.path.join(out, "reference")
    reference = steps.cached(reference_dir)
    if reference is None:
        say(0, len(points), "scoring the starting model (the FFT line)")
        reference = steps.finish(reference_dir, _score(config))
    rows = []
    for k, point in enumerate(points):
        say(k, len(points), f"MFT with {config.axis} = {point['label']}")
        result = _run_point(config, point, os.path.join(out, "points", point["name"]), report)
        rows.append({"name": point["name"], "label": point["label"], "value": point["value"], **result})
    say(len(points), len(points), "done")
    doc = _sweep_doc(config, rows, reference, select_point(rows))
    write_result(out, "sweep", doc, rows=rows)
    note = "; test numbers are shown beside it and were not used to choose" if config.test_data else ""
    write_text_atomic(
        os.path.join(out, "sweep.md"),
        f"# Sweep: {config.axis}\n\nThe selected point has the lowest "
        f"validation loss{note}.\n\n" + markdown(sweep_table(doc)),
    )
    return doc

"""The steps of the paper's protocol on one domain, each cached in its own folder.

A step whose output exists (a `result.json` written last, atomically) is not run again, so a
re-run of the protocol or a sweep reuses every finished step and a killed run resumes at the step it
was in. Every step is deterministic for its seed.
"""

from __future__ import annotations

import json
import os
import shutil

import torch

from mftlab.errors import MftlabError
from mftlab.files.results import read_json, write_json
from mftlab.mask.maskfile import save_mask
from mftlab.mft.apply import load_masked
from mftlab.mft.baselines import baseline_mask
from mftlab.mft.targeting import TargetSpec
from mftlab.models.loading import load_model
from mftlab.models.tokenizer import padding_id
from mftlab.progress.events import StepProgress, counter
from mftlab.significance.per_example import write_per_example
from mftlab.training.config import TrainConfig
from mftlab.training.data import load_examples
from mftlab.training.evaluation import evaluate, loss_sums, make_batches
from mftlab.training.loop import train

DONE = "result.json"


class StepError(MftlabError):
    """A protocol step left something other than what it should have (e.g. no metrics)."""


PRUNING_KINDS = ("wanda", "snip")
CALIBRATION_TOKENS = 4096  # a few thousand tokens: enough for a stable ranking of the tiny models' weights


def cached(folder: str) -> dict | None:
    """The saved result of a finished step, or None (then any partial folder is cleared)."""
    path = os.path.join(folder, DONE)
    if os.path.exists(path):
        return read_json(path)
    return None


def finish(folder: str, result: dict) -> dict:
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, DONE), result)
    return result


def fresh(folder: str) -> str:
    """An empty folder for a step that has not finished (leftovers of a killed run removed)."""
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def resumable(folder: str) -> bool:
    """Whether `folder` holds a training run that was killed after writing a checkpoint."""
    from mftlab.training.checkpoint import list_checkpoints

    return os.path.isfile(os.path.join(folder, "config.json")) and bool(list_checkpoints(folder))


def run_training(folder: str, config: TrainConfig, progress=None) -> dict:
    """Train (or reuse) one run; returns the run's summary and its eval-loss curve."""
    done = cached(folder)
    if done is not None:
        return done
    fresh(folder)
    return finish(folder, train_summary(config, progress))


def train_summary(config: TrainConfig, progress=None) -> dict:
    """Train `config` in this process; the run's summary and its eval-loss curve."""
    result = train(config, progress=progress)
    curve = []
    with open(os.path.join(config.out, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if "eval_loss" in row:
                curve.append({"step": row["step"], "eval_loss": row["eval_loss"]})
    return {
        "output": result.output_path,
        "steps": result.steps,
        "best_step": result.best_step,
        "best_eval_loss": result.best_eval_loss,
        "final_loss": result.final_loss,
        "mask_ratio": result.mask_ratio,
        "curve": curve,
    }


def make_baseline_mask(
    folder: str,
    model_dir: str,
    kind: str,
    mask_ratio: float,
    layers: str,
    *,
    seed: int,
    name: str | None = None,
    device="cpu",
    dtype: str = "auto",
) -> str:
    """A random or magnitude mask of the FFT model at the MFT ratio and layers (cached as `name or kind`)."""
    path = os.path.join(folder, f"{name or kind}.safetensors")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        model = load_model(model_dir, dtype=dtype, device=device).model
        mask, _ = baseline_mask(
            model, kind, mask_ratio, TargetSpec.parse("all-linear", layers), seed=seed, base_name=model_dir
        )
        save_mask(mask, path)
    return path


def make_pruning_mask(
    folder: str,
    model_dir: str,
    kind: str,
    mask_ratio: float,
    layers: str,
    *,
    calibration_file: str,
    max_seq_len: int,
    calibration_tokens: int = CALIBRATION_TOKENS,
    device="cpu",
    dtype: str = "auto",
    batch_size: int | None = None,
    report=None,
) -> str:
    """A Wanda or SNIP mask of the FFT model, calibrated on `calibration_file` (cached), on `device`;
    `report` gets progress events of the calibration tokens."""
    from mftlab.mft.calibration import CalibrationConfig, load_calibration

    path = os.path.join(folder, f"{kind}.safetensors")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        loaded = load_model(model_dir, dtype=dtype, device=device)
        calibration = load_calibration(
            CalibrationConfig(calibration_file, calibration_tokens, batch_size or 16, max_seq_len),
            loaded.tokenizer,
            device,
        )
        mask, _ = baseline_mask(
            loaded.model,
            kind,
            mask_ratio,
            TargetSpec.parse("all-linear", layers),
            base_name=model_dir,
            calibration=calibration,
            progress=None if report is None else counter(report, f"{kind} calibration", "token"),
        )
        save_mask(mask, path)
    return path


def load_method_model(model_dir: str, mask_path: str | None = None, **load) -> tuple[torch.nn.Module, object]:
    """A saved model (optionally with a mask applied in memory) and its tokenizer; `load` goes to load_model."""
    loaded, _ = load_masked(model_dir, mask_path, **load)
    return loaded.model, loaded.tokenizer


def load_lora_model(adapter_dir: str, base_dir: str, **load):
    """The backbone with a trained LoRA adapter merged in; `load` goes to load_model."""
    import peft

    loaded = load_model(base_dir, **load)
    model = peft.PeftModel.from_pretrained(loaded.model, adapter_dir).merge_and_unload()
    return model.eval(), loaded.tokenizer


def _examples_scored(report, what: str):
    """`evaluate`'s progress callback reporting the examples scored as `what` (None without `report`)."""
    if report is None:
        return None
    return lambda _, done, total: report(StepProgress(what, "example", done, total))


def _validation_loss(model, tokenizer, val: list, *, batch_size: int, device, distributed: bool) -> float:
    """The loss on the validation examples; `distributed`: each process scores its share of the batches."""
    if distributed:
        return evaluate(
            model, tokenizer, val, batch_size=batch_size, generate=False, device=device, distributed=True
        ).loss
    return loss_sums(model, make_batches(val, batch_size, padding_id(tokenizer), device)).loss


def evaluate_method(
    folder: str,
    name: str,
    load,
    test_files: dict[str, str],
    val_file: str,
    *,
    max_seq_len: int,
    device="cpu",
    distributed: bool = False,
    batch_size: int | None = None,
    report=None,
) -> dict:
    """Exact-match and loss of one method on every domain's test set (cached per method), with the
    per-example rows of each test set in `examples-NAME-DOMAIN.jsonl` (for the paired tests).

    `load()` returns (model, tokenizer) on `device`; it is only called when the result is not cached
    yet. `distributed`: every process of a launch calls this and does its share of the batches (the
    sums are added up, process 0 writes the result). `batch_size` overrides the test (128) and
    validation (64) batches. `report`: progress events of the examples scored (mftlab.progress.events).
    """
    path = os.path.join(folder, f"eval-{name}.json")
    if scored(folder, name):
        return read_json(path)
    model, tokenizer = load()
    scores, rows = {}, {}
    for domain, test in test_files.items():
        examples, _ = load_examples(test, tokenizer, max_seq_len)
        # Every answer ends with end-of-text, so teacher-forced whole-answer accuracy equals greedy
        # exact match (see LossSums.answer_accuracy) at the cost of one forward pass.
        r = evaluate(
            model,
            tokenizer,
            examples,
            batch_size=batch_size or 128,
            generate=False,
            device=device,
            distributed=distributed,
            per_example=True,
            progress=_examples_scored(report, f"scoring {name}: {domain} test"),
        )
        scores[domain] = {"exact_match": r.answer_accuracy, "loss": r.loss, "token_accuracy": r.token_accuracy}
        rows[domain] = r.per_example
    val, _ = load_examples(val_file, tokenizer, max_seq_len)
    val_loss = _validation_loss(
        model, tokenizer, val, batch_size=batch_size or 64, device=device, distributed=distributed
    )
    result = {"method": name, "test": scores, "validation_loss": val_loss}
    if not distributed or _rank() == 0:
        os.makedirs(folder, exist_ok=True)
        for domain, domain_rows in rows.items():  # before the JSON, whose presence marks the method scored
            write_per_example(os.path.join(folder, per_example_file(name, domain)), domain_rows)
        write_json(path, result)
    return result


def per_example_file(name: str, test_domain: str) -> str:
    """The per-example results of method `name` on a domain's test set, in the scoring folder."""
    return f"examples-{name}-{test_domain}.jsonl"


def scored(folder: str, name: str) -> bool:
    """Whether method `name` is scored in `folder`: its eval JSON and a per-example file for every test set
    (a folder scored by an older mftlab, without per-example files, is scored again)."""
    path = os.path.join(folder, f"eval-{name}.json")
    if not os.path.exists(path):
        return False
    tests = read_json(path).get("test", {})
    return all(os.path.exists(os.path.join(folder, per_example_file(name, d))) for d in tests)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0

"""`mftlab eval` end to end: MODEL (a mask applied in memory) scored on data, or on lm-eval tasks.

    settings = EvalSettings(batch_size=8, max_new_tokens=16)
    outcome = run_eval("tiny-llama", settings, data="test.jsonl", mask_path="mask.safetensors")
    outcome.result.loss                # --data: mftlab.training.evaluation's EvalResult
    outcome.tasks["results"]           # --tasks: lm-eval's results, mftlab's header under "mftlab"

Under torchrun / accelerate launch every process calls `run_eval`; the examples are shared out and
only process 0 gets an outcome (the others get None). Warnings, skipped records and the files written
are reported through `note(text)` when they happen, so they come before the progress lines that follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from mftlab.errors import ConfigError
from mftlab.harness.config import HarnessConfig
from mftlab.training.evaluation import EvalResult

_LOAD_OPTIONS = ("dtype", "gguf_file", "trust_remote_code")  # the model options load_model takes


@dataclass(frozen=True, kw_only=True)
class EvalSettings:
    """How `--data` is read and scored: batching, the seeded data fraction, generation for exact match."""

    batch_size: int = 16
    max_seq_len: int = 512
    data_fraction: float = 1.0
    max_new_tokens: int = 32
    no_generate: bool = False  # loss metrics only, no generation exact-match
    skip_bad: bool = False
    seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1 or self.max_new_tokens < 1:
            raise ConfigError("--batch-size and --max-new-tokens must be at least 1")

    @classmethod
    def from_options(cls, options: dict) -> "EvalSettings":
        """The settings from a command's options: their own fields are taken, the others ignored."""
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})


@dataclass
class EvalOutcome:
    """What process 0 of `mftlab eval` prints: `result` (--data) or `tasks` (--tasks) and the files written."""

    source: dict  # model, mask and data, as given
    result: EvalResult | None = None
    peak_memory: dict = field(default_factory=dict)  # mftlab.training.peak_memory's keys, with --data
    tasks: dict | None = None  # lm-eval's results with mftlab's header first
    written: list[str] = field(default_factory=list)  # lm-eval's result files (--output-path)


def check_per_example(path: str | None) -> None:
    if path is not None and not path.endswith(".jsonl"):
        raise ConfigError(f"--per-example '{path}' must be a .jsonl file (one JSON line per example)")


def _harness(tasks: str | None, settings: EvalSettings, per_example: str | None, options: dict):
    """The lm-eval config of --tasks (None without tasks); `options` holds HarnessConfig's fields by name."""
    if not tasks:
        return None
    values = {f.name: options[f.name] for f in fields(HarnessConfig) if f.name in options and f.name != "tasks"}
    values["log_samples"] = values.get("log_samples") or per_example is not None  # per-example rows come from them
    return HarnessConfig.from_text(tasks, **{**values, "batch_size": settings.batch_size})


def _write_rows(path: str, rows: list[dict], note) -> None:
    from mftlab.significance.per_example import write_per_example

    write_per_example(path, rows)
    note(f"wrote {path} ({len(rows)} examples)")


def _score_data(loaded, launch, settings: EvalSettings, outcome: EvalOutcome, *, per_example, progress, note):
    """Loss, token accuracy and exact match on `outcome.source["data"]`; None on processes other than 0."""
    from mftlab.training.data import load_examples
    from mftlab.training.evaluation import evaluate
    from mftlab.training.peak_memory import peak_memory

    s = settings
    examples, report = load_examples(
        outcome.source["data"],
        loaded.tokenizer,
        s.max_seq_len,
        data_fraction=s.data_fraction,
        seed=s.seed,
        skip_bad=s.skip_bad,
    )
    for problem in report.skipped[:5]:
        note(f"skipped: {problem}")
    outcome.result = evaluate(
        loaded.model,
        loaded.tokenizer,
        examples,
        device=launch.device,
        distributed=launch.distributed,
        per_example=per_example is not None,
        progress=progress if launch.is_main else None,
        generate=not s.no_generate,
        max_new_tokens=s.max_new_tokens,
        batch_size=s.batch_size,
    )
    outcome.peak_memory = peak_memory(launch.device, distributed=launch.distributed)  # every process takes part
    if not launch.is_main:
        return None
    if per_example is not None:
        _write_rows(per_example, outcome.result.per_example, note)
    return outcome


def _score_tasks(
    loaded, launch, harness: HarnessConfig, outcome: EvalOutcome, *, mask, mismatched, per_example, log_samples, note
):
    """lm-eval's results on `harness.tasks`, written to --output-path if given; None on processes other than 0.

    With `per_example` lm-eval logs its samples whatever --log-samples says (`_harness`); they are kept in
    the results only when --log-samples asked for them.
    """
    from mftlab.harness.run import header, per_example_rows, run_tasks, write_results

    results = run_tasks(loaded.model, loaded.tokenizer, harness, launch)
    if results is None:  # not process 0 of a launch
        return None
    if per_example is not None:
        _write_rows(per_example, per_example_rows(results), note)
        if not log_samples:
            results.pop("samples", None)
    source = outcome.source
    outcome.tasks = {"mftlab": header(source["model"], source["mask"], mask, mismatched, harness), **results}
    outcome.written = write_results(outcome.tasks, harness.output_path) if harness.output_path else []
    return outcome


def run_eval(
    model: str,
    settings: EvalSettings,
    *,
    data: str | None = None,
    tasks: str | None = None,
    mask_path: str | None = None,
    per_example: str | None = None,
    force: bool = False,
    device: str = "auto",
    options: dict | None = None,
    progress=None,
    note=None,
) -> EvalOutcome | None:
    """Evaluate `model` (with the mask at `mask_path` applied) on `data`, or on lm-eval's `tasks`.

    `options`: the model options (dtype, gguf_file, trust_remote_code) and, with `tasks`, HarnessConfig's
    fields by name. `per_example`: also write one JSON line per example there (.jsonl).
    `progress(stage, done, total)`: see mftlab.training.evaluation.evaluate (process 0 only);
    `note(text)`: a line for the user (a warning, a skipped record, a file written).
    """
    from mftlab.mask.maskfile import load_mask
    from mftlab.mft.apply import load_masked
    from mftlab.models.device import join_launch, resolve_device

    options, note = options or {}, note or (lambda text: None)
    check_per_example(per_example)
    harness = _harness(tasks, settings, per_example, options)
    where = resolve_device(device)  # a GPU that is not there is reported before anything is loaded
    mask = load_mask(mask_path) if mask_path else None  # validate the file before loading a model
    launch = join_launch(where)  # under torchrun / accelerate launch the processes share the examples
    load = {k: options[k] for k in _LOAD_OPTIONS if k in options}
    loaded, mismatched = load_masked(model, mask, force=force, device=where, **load)
    if mismatched:
        note(f"warning: {len(mismatched)} tensors differ from the mask's base (--force)")
    outcome = EvalOutcome({"model": model, "mask": mask_path, "data": data})
    if harness is None:
        return _score_data(loaded, launch, settings, outcome, per_example=per_example, progress=progress, note=note)
    return _score_tasks(
        loaded,
        launch,
        harness,
        outcome,
        mask=mask,
        mismatched=mismatched,
        per_example=per_example,
        log_samples=options.get("log_samples"),
        note=note,
    )

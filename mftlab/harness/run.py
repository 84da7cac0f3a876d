"""Standard benchmarks through lm-evaluation-harness, on a model in memory (a mask applied, no copy on disk).

    results = run_tasks(model, tokenizer, HarnessConfig.from_text("gsm8k", num_fewshot=5), device)

The model goes to lm-eval as an `HFLM` built from the live module (`HFLM(pretrained=model, tokenizer=...)`),
so a masked model is scored exactly as `mftlab apply` would write it, without writing it. Task names
are checked before anything runs: an unknown one is a ConfigError with the closest names lm-eval knows,
and a task whose data set is on the hub while HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set is a
ConfigError naming the task and the variable. Under torchrun / accelerate launch (`launch` with more
than one process) every process takes its share of every task's requests (lm-eval's own
data-parallel path: requests dealt by rank, padded to the same count, gathered to process 0), which
returns the results; the others get None.
"""

from __future__ import annotations

import difflib
import json
import os

from mftlab.errors import ConfigError
from mftlab.harness.config import HarnessConfig

INSTALL = "install it with: pip install 'mftlab[eval]'"
OFFLINE_VARIABLES = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def lm_eval_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("lm_eval") is not None


def _lm_eval():
    try:
        import lm_eval
    except ImportError:
        raise ConfigError(
            f"--tasks needs lm-evaluation-harness (the lm-eval package), which is not installed; {INSTALL}"
        ) from None
    return lm_eval


def _offline() -> str | None:
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").strip() not in ("", "0", "false")), None)


_MANAGERS: dict = {}  # (include_path, with lm-eval's own tasks) -> TaskManager: indexing takes seconds


def _manager(include_path: str | None, defaults: bool):
    from lm_eval.tasks import TaskManager

    key = (os.path.abspath(include_path) if include_path else None, defaults)
    if key not in _MANAGERS:
        _MANAGERS[key] = TaskManager(verbosity="ERROR", include_path=include_path, include_defaults=defaults)
    return _MANAGERS[key]


def task_manager(config: HarnessConfig):
    """lm-eval's task index (built once per folder in this process). When every task is one of the
    --include-path folder's own, lm-eval's thousands of built-in task files are not indexed at all."""
    if config.include_path:
        own = _manager(config.include_path, defaults=False)
        if all(name in own.all_tasks for name in config.tasks):
            return own
    return _manager(config.include_path, defaults=True)


def check_tasks(config: HarnessConfig, manager) -> None:
    """Every task name known (else the closest ones) and loadable (else why, e.g. offline)."""
    from lm_eval.tasks import get_task_dict

    known = manager.all_tasks
    for name in config.tasks:
        if name not in known and not manager.match_tasks([name]):
            close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
            hint = f"closest: {', '.join(close)}" if close else "no similar name"
            where = " or check --include-path" if config.include_path else "; add your own with --include-path DIR"
            raise ConfigError(f"--tasks: '{name}' is not a task lm-eval knows ({hint}){where}")
    for name in config.tasks:
        try:
            get_task_dict([name], manager)
        except Exception as exc:  # noqa: BLE001 - datasets and lm-eval raise many kinds; one clear line
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            offline = _offline()
            if offline:
                raise ConfigError(
                    f"task '{name}' needs its data set from the Hugging Face hub, but {offline} is set ({first}); "
                    "run it once with the hub reachable (the data set is cached), or use a local task YAML "
                    "(--include-path)"
                ) from None
            raise ConfigError(f"task '{name}' cannot be loaded: {first}") from None


def _model(model, tokenizer, config: HarnessConfig, launch):
    from lm_eval.models.huggingface import HFLM

    class LaunchedHFLM(HFLM):
        """HFLM on a live model whose processes come from torchrun / accelerate launch (mftlab joined the
        group): lm-eval deals requests by `rank` and gathers through these."""

        def all_gather(self, tensor):
            import torch
            import torch.distributed as dist

            if self.world_size <= 1:
                return tensor
            parts = [torch.zeros_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
            return torch.stack(parts) if tensor.dim() == 0 else torch.cat(parts)

        def barrier(self):
            if self.world_size > 1:
                import torch.distributed as dist

                dist.barrier()

    lm = LaunchedHFLM(pretrained=model, tokenizer=tokenizer, batch_size=config.batch_size)
    if launch is not None and launch.distributed:
        lm._rank, lm._world_size = launch.rank, launch.world_size
    return lm


def run_tasks(model, tokenizer, config: HarnessConfig, launch=None) -> dict | None:
    """lm-eval's results for `config.tasks` on `model` as it is in memory; None on processes other than 0."""
    lm_eval = _lm_eval()
    if tokenizer is None:
        raise ConfigError("--tasks needs the model's tokenizer; the model folder has none (add tokenizer files)")
    manager = task_manager(config)
    check_tasks(config, manager)
    was_training = model.training
    model.eval()
    try:
        results = lm_eval.simple_evaluate(
            model=_model(model, tokenizer, config, launch),
            tasks=list(config.tasks),
            num_fewshot=config.num_fewshot,
            limit=int(config.limit) if config.limit is not None and config.limit >= 1 else config.limit,
            log_samples=config.log_samples,
            apply_chat_template=config.apply_chat_template,
            fewshot_as_multiturn=config.fewshot_as_multiturn,
            gen_kwargs=config.generation_settings(),
            task_manager=manager,
            confirm_run_unsafe_code=config.confirm_run_unsafe_code,
            verbosity="ERROR",
        )
    finally:
        model.train(was_training)
    return None if results is None else _plain(results)


def _plain(results: dict) -> dict:
    """lm-eval's results as plain JSON values (numpy numbers and the like made serialisable)."""
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(results, default=handle_non_serializable))


def metric_lines(results: dict) -> list[str]:
    """One line per task and metric: `task  metric  value ± stderr`."""
    lines = []
    for task, values in results["results"].items():
        for key, value in values.items():
            if (
                key.endswith("_stderr")
                or "_stderr," in key
                or not isinstance(value, (int, float))
                or key == "sample_len"
            ):
                continue
            err = values.get(key.replace(",", "_stderr,", 1))
            spread = f" ± {err:.4f}" if isinstance(err, (int, float)) else ""
            lines.append(f"{task}  {key}  {value:.4f}{spread}")
    return lines


def write_results(results: dict, output_path: str) -> list[str]:
    """`output_path` (.json file) or `output_path/results.json`, and per-task `samples_TASK.jsonl` beside it."""
    from mftlab.files.atomic import write_text_atomic

    folder = os.path.dirname(output_path) if output_path.endswith(".json") else output_path
    path = output_path if output_path.endswith(".json") else os.path.join(folder, "results.json")
    os.makedirs(folder or ".", exist_ok=True)
    samples = results.get("samples") or {}
    written = []
    for task, rows in samples.items():
        target = os.path.join(folder, f"samples_{task}.jsonl")
        write_text_atomic(target, "".join(json.dumps(r) + "\n" for r in rows))
        written.append(target)
    summary = {k: v for k, v in results.items() if k != "samples"}
    write_text_atomic(path, json.dumps(summary, indent=2) + "\n")
    return [path] + written


def header(model: str, mask_path: str | None, mask, mismatched: list[str], config: HarnessConfig) -> dict:
    """mftlab's part of the results: what was evaluated (model, mask, its fit and ratio, its method)."""
    values = {"model": model, "mask": mask_path, "tasks": list(config.tasks)}
    if mask is not None:
        values.update(
            mask_fingerprints="match" if not mismatched else f"{len(mismatched)} tensors differ (--force)",
            mask_ratio=mask.mask_ratio,
            method=mask.method,
        )
    return values


def per_example_rows(results: dict) -> list[dict]:
    """lm-eval's per-document scores (results["samples"], from log_samples) as per-example rows.

    One row per task and document, from the task's first filter (lm-eval logs a document once per
    filter, e.g. gsm8k's strict and flexible answer extraction); `correct` is the document's value of
    the task's first metric (acc, exact_match, ...). No loss: lm-eval does not score answer tokens.
    """
    rows = []
    for task, samples in (results.get("samples") or {}).items():
        first = samples[0].get("filter") if samples else None
        for sample in sorted((s for s in samples if s.get("filter") == first), key=lambda s: s["doc_id"]):
            metric = sample["metrics"][0]
            rows.append(
                {
                    "index": len(rows),
                    "id": f"{task}/{sample['doc_id']}",
                    "key": str(sample.get("doc_hash", ""))[:12] or None,
                    "task": task,
                    "filter": first,
                    "scored_by": f"lm-eval:{metric}",
                    "correct": sample[metric],
                    **{m: sample[m] for m in sample["metrics"]},
                }
            )
    return rows

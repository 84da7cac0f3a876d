"""Runs each protocol step where the runtime says, and keeps a record of it.

`StepRunner(out, runtime)` is what the protocol calls for every step that computes:
- `train(label, folder, config)`: the runtime's dtype, device, gradient accumulation, checkpointing
  and (FFT under a launch) FSDP are applied to the step's TrainConfig; with `processes > 1` the step
  is launched as `torchrun ... -m mftlab.cli.main train ...` (recipes.launch), else it runs here as
  before. A folder holding a killed run's checkpoint is resumed from it, not started over.
- `score(folder, jobs, ...)`: every method's test and validation numbers; under a launch one
  worker (`mftlab protocol-step SPEC`) scores the jobs not cached yet, each process taking its share
  of every test set's batches (`score_ahead` gives it all of a domain's methods at once).
- `landscape(folder, job)`: the landscape through FFT / continued FFT / MFT, its points dealt over
  the processes under a launch.
- `pruning_mask` / `baseline_mask`: Wanda / SNIP calibration and random / magnitude masks on the
  runtime's device, in this process (one model, one pass over the calibration tokens).

Every step that ran (not the cached ones) is appended to OUT/steps.jsonl with its processes,
device, wall seconds, peak memory (GiB, largest process) and the plan's estimate for it, which the
report shows beside the plan.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace

from mftlab.files.atomic import append_line
from mftlab.files.results import read_json, write_json
from mftlab.progress.events import StepNote
from mftlab.progress.training import training_events
from mftlab.recipes import steps
from mftlab.recipes.launch import launch_step
from mftlab.recipes.runtime import Runtime
from mftlab.recipes.train_command import train_arguments
from mftlab.training.config import TrainConfig

STEPS_LOG = "steps.jsonl"
WORKER_REPORT = "worker-report.json"
CLI = ["-m", "mftlab.cli.main"]


@dataclass(frozen=True)
class ScoreJob:
    """One method to score: a model folder, optionally a mask applied in memory or a LoRA adapter merged."""

    name: str
    model_dir: str
    mask: str | None = None
    adapter: str | None = None  # then model_dir is the backbone the adapter was trained on

    def loader(self, device="cpu", dtype: str = "auto"):
        load = {} if (device == "cpu" and dtype == "auto") else {"device": device, "dtype": dtype}
        if self.adapter is not None:
            return lambda: steps.load_lora_model(self.adapter, self.model_dir, **load)
        return lambda: steps.load_method_model(self.model_dir, self.mask, **load)


def runtime_train_config(config: TrainConfig, runtime: Runtime) -> TrainConfig:
    """The step's TrainConfig as the runtime runs it (unchanged under the default runtime)."""
    changes = {}
    if runtime.dtype is not None:
        changes["dtype"] = runtime.dtype
    if runtime.device != "auto":
        changes["device"] = runtime.device
    if runtime.grad_accum != 1:
        changes["grad_accum"] = runtime.grad_accum
    if runtime.gradient_checkpointing:
        changes["gradient_checkpointing"] = True
    if runtime.eval_batch_size is not None:
        changes["eval_batch_size"] = runtime.eval_batch_size
    if config.method == "fft" and runtime.launched and runtime.fft_sharding == "fsdp":
        changes["sharding"] = "fsdp"  # MFT and LoRA stay data-parallel
    if config.method != "mask" and runtime.checkpoint_every and not config.save_every:
        changes["save_every"] = runtime.checkpoint_every  # MFT saves its own (the dynamics read them)
    return replace(config, **changes) if changes else config


def summary_from_folder(folder: str, method: str) -> dict:
    """The run summary `steps.run_training` keeps, read back from a finished run's metrics.jsonl."""
    rows = _metrics(folder)
    trained = [r for r in rows if r.get("step", 0) > 0]
    if not trained:
        raise steps.StepError(f"the run in '{folder}' wrote no training step to metrics.jsonl; see its log.txt")
    evals = [r for r in trained if "eval_loss" in r]
    best = min(evals, key=lambda r: r["eval_loss"]) if evals else None  # min keeps the first, as the loop does
    last_loss = next((r["loss"] for r in reversed(trained) if "loss" in r), None)
    out = {"mask": "mask.safetensors", "fft": "model", "lora": "adapter"}[method]
    return {
        "output": os.path.join(folder, out),
        "steps": max(r["step"] for r in trained),
        "best_step": best["step"] if best else None,
        "best_eval_loss": best["eval_loss"] if best else None,
        "final_loss": last_loss,
        "mask_ratio": next((r["mask_ratio"] for r in reversed(trained) if "mask_ratio" in r), None),
        "curve": [{"step": r["step"], "eval_loss": r["eval_loss"]} for r in rows if "eval_loss" in r],
    }


def _metrics(folder: str) -> list[dict]:
    path = os.path.join(folder, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _peak_from_metrics(folder: str) -> float | None:
    peaks = [r["peak_mem_gib"] for r in _metrics(folder) if "peak_mem_gib" in r]
    return max(peaks) if peaks else None


class StepRunner:
    def __init__(self, out: str, runtime: Runtime, plans: dict[str, float] | None = None, state=None, report=None):
        from mftlab.models.device import resolve_device

        self.out, self.runtime = out, runtime
        self.state = state  # mftlab.progress.run_state.RunState: the run's ETA learns from every step
        self.report = report or (lambda event: None)  # progress events of the steps (mftlab.progress.events)
        self.plans = plans or {}  # step folder (relative to out) -> planned peak GiB per GPU
        self.device = resolve_device(runtime.device, local_rank=0)  # this process's own work
        self.dtype = runtime.dtype or "auto"

    # -- records -------------------------------------------------------------------------------
    def _record(self, label: str, kind: str, folder: str, seconds: float, peak: float | None) -> None:
        """Append a step that ran to OUT/steps.jsonl (a launched one ran on the runtime's processes and device)."""
        launched, where = self.runtime.launched, os.path.relpath(folder, self.out)
        row = {
            "step": label,
            "kind": kind,
            "folder": where,
            "processes": self.runtime.processes if launched else 1,
            "device": self.runtime.device if launched else str(self.device),
            "seconds": round(seconds, 2),
            "peak_mem_gib": peak,
            "plan_gib": self.plans.get(where),
        }
        with open(os.path.join(self.out, STEPS_LOG), "a", encoding="utf-8") as log:
            append_line(log, json.dumps(row))
        if self.state is not None:
            self.state.measured(kind, where, seconds)

    def _starting(self, folder: str) -> None:
        if self.state is not None:
            self.state.running(os.path.relpath(folder, self.out))

    def _forward(self, text: str) -> None:
        """A launched step's progress line (process 0's, already in words), passed on as a note."""
        self.report(StepNote("", text))

    def _local_peak(self) -> float:
        from mftlab.training.peak_memory import peak_memory

        return peak_memory(self.device)["peak_mem_gib"]

    def release(self) -> None:
        """Give back the GPU memory this process cached (a mask step's model) before launched processes need it."""
        if self.device.type == "cuda":
            import gc

            import torch

            gc.collect()
            torch.cuda.empty_cache()

    def _reset_peak(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    # -- training ------------------------------------------------------------------------------
    def train(self, label: str, folder: str, config: TrainConfig, progress=None) -> dict:
        done = steps.cached(folder)
        if done is not None:
            return done
        config = runtime_train_config(config, self.runtime)
        if steps.resumable(folder):  # killed mid-way: on from its last checkpoint
            config = replace(config, resume=True)
        else:
            steps.fresh(folder)
        self._starting(folder)
        started = time.perf_counter()
        if self.runtime.launched:
            self.release()
            launch_step(label, folder, CLI + ["train", *train_arguments(config)], self.runtime, self._forward)
            summary = summary_from_folder(folder, config.method)
        else:
            self._reset_peak()  # the metrics' peak is then this step's
            summary = steps.train_summary(config, progress or training_events(label, self.report))
        self._record(label, "train", folder, time.perf_counter() - started, _peak_from_metrics(folder))
        return steps.finish(folder, summary)

    # -- scoring -------------------------------------------------------------------------------
    def score(self, label: str, folder: str, jobs: list[ScoreJob], tests: dict, val: str, *, max_seq_len: int) -> dict:
        """name -> eval result of every job (cached per method as eval-NAME.json in `folder`)."""
        todo = [j for j in jobs if not steps.scored(folder, j.name)]
        if todo:
            self._starting(folder)
            started = time.perf_counter()
            os.makedirs(folder, exist_ok=True)
            if self.runtime.launched:
                peak = self._launch_scoring(label, folder, todo, tests, val, max_seq_len=max_seq_len)
            else:
                self._reset_peak()
                for job in todo:
                    self._score_here(folder, job, tests, val, max_seq_len=max_seq_len, report=self.report)
                peak = self._local_peak()
            self._record(label, "score", folder, time.perf_counter() - started, peak)
        return {j.name: self._score_here(folder, j, tests, val, max_seq_len=max_seq_len) for j in jobs}

    def score_ahead(self, label: str, folder: str, jobs: list[ScoreJob], tests: dict, val: str, *, max_seq_len: int):
        """Under a launch, score every job not cached yet in one launch (one start-up for a domain's methods);
        `score` then reads them back. In this process it does nothing: each method is scored when asked."""
        if self.runtime.launched:
            self.score(label, folder, jobs, tests, val, max_seq_len=max_seq_len)

    def _launch_scoring(self, label, folder, todo, tests, val, *, max_seq_len) -> float | None:
        spec = {
            "task": "score",
            "jobs": [asdict(j) for j in todo],
            "tests": tests,
            "validation": val,
            "max_seq_len": max_seq_len,
            "batch_size": self.runtime.eval_batch_size,
            "device": self.runtime.device,
            "dtype": self.dtype,
        }
        return self._launch_worker(label, folder, "score", spec)

    def _score_here(self, folder, job: ScoreJob, tests, val, *, max_seq_len, report=None) -> dict:
        return steps.evaluate_method(
            folder,
            job.name,
            job.loader(self.device, self.dtype),
            tests,
            val,
            max_seq_len=max_seq_len,
            device=self.device,
            batch_size=self.runtime.eval_batch_size,
            report=report,
        )

    # -- benchmarks (lm-eval) ---------------------------------------------------------------------
    def benchmark(self, label: str, folder: str, jobs: list[ScoreJob], harness) -> dict:
        """name -> lm-eval entry of every job on `harness`'s tasks (cached as bench-NAME.json in `folder`)."""
        from mftlab.recipes import benchmarks

        todo = [j for j in jobs if not os.path.exists(benchmarks.bench_path(folder, j.name))]
        if todo:
            started = time.perf_counter()
            if self.runtime.launched:
                spec = {
                    "task": "benchmark",
                    "jobs": [asdict(j) for j in todo],
                    "harness": asdict(harness),
                    "device": self.runtime.device,
                    "dtype": self.dtype,
                }
                peak = self._launch_worker(label, folder, "benchmark", spec)
            else:
                self._reset_peak()
                for job in todo:
                    benchmarks.score_job(folder, job, harness, device=self.device, dtype=self.dtype)
                peak = self._local_peak()
            self._record(label, "benchmark", folder, time.perf_counter() - started, peak)
        return {j.name: benchmarks.score_job(folder, j, harness) for j in jobs}

    # -- landscape -----------------------------------------------------------------------------
    def landscape(self, folder: str, job: dict) -> None:
        from mftlab.recipes.protocol_analysis import run_landscape_job

        label = f"loss landscape ({os.path.basename(folder)})"
        self._starting(folder)
        started = time.perf_counter()
        if self.runtime.launched:
            spec = {"task": "landscape", "job": job, "device": self.runtime.device, "dtype": self.dtype}
            peak = self._launch_worker(label, folder, "landscape", spec)
        else:
            self._reset_peak()
            run_landscape_job(folder, job, device=self.device, dtype=self.dtype, report=self.report)
            peak = self._local_peak()
        self._record(label, "landscape", folder, time.perf_counter() - started, peak)

    # -- masks computed in this process ----------------------------------------------------------
    def placement(self) -> dict:
        """Where this process loads models: {} under the default runtime on the CPU (as before)."""
        if self.device.type == "cpu" and self.dtype == "auto":
            return {}
        return {"device": self.device, "dtype": self.dtype}

    def _launch_worker(self, label: str, folder: str, task: str, spec: dict) -> float | None:
        spec_path = os.path.join(folder, f"{task}-spec.json")
        report = os.path.join(folder, WORKER_REPORT)
        write_json(spec_path, dict(spec, report=report))
        self.release()
        launch_step(label, folder, CLI + ["protocol-step", os.path.abspath(spec_path)], self.runtime, self._forward)
        return read_json(report).get("peak_mem_gib") if os.path.exists(report) else None


def run_worker(spec_path: str, report=None) -> None:
    """One launched worker process of a scoring or landscape step (`mftlab protocol-step SPEC`); process 0
    reports progress events to `report`."""
    from mftlab.models.device import join_launch, resolve_device
    from mftlab.recipes.protocol_analysis import run_landscape_job
    from mftlab.training.peak_memory import peak_memory

    spec = read_json(spec_path)
    device = resolve_device(spec["device"])
    launch = join_launch(device, timeout_s=1800)
    folder = os.path.dirname(os.path.abspath(spec_path))
    if spec["task"] == "score":
        for job in (ScoreJob(**j) for j in spec["jobs"]):
            steps.evaluate_method(
                folder,
                job.name,
                job.loader(device, spec["dtype"]),
                spec["tests"],
                spec["validation"],
                max_seq_len=spec["max_seq_len"],
                device=device,
                distributed=launch.distributed,
                batch_size=spec["batch_size"],
                report=report if launch.is_main else None,
            )
            launch.barrier()  # process 0 has written eval-NAME.json before anyone goes on
    elif spec["task"] == "benchmark":
        from mftlab.harness.config import HarnessConfig
        from mftlab.recipes.benchmarks import score_job

        values = dict(spec["harness"], tasks=tuple(spec["harness"]["tasks"]))
        harness = HarnessConfig(**values)
        for job in (ScoreJob(**j) for j in spec["jobs"]):
            score_job(folder, job, harness, device=device, dtype=spec["dtype"], launch=launch)
            launch.barrier()  # process 0 has written bench-NAME.json before anyone goes on
    elif spec["task"] == "landscape":
        run_landscape_job(
            folder,
            spec["job"],
            device=device,
            dtype=spec["dtype"],
            launch=launch,
            report=report if launch.is_main else None,
        )
    else:
        raise steps.StepError(
            f"unknown protocol step task '{spec['task']}' in {spec_path}; expected score or landscape"
        )
    peaks = peak_memory(device, distributed=launch.distributed)  # every process takes part
    if launch.is_main:
        write_json(spec["report"], peaks)

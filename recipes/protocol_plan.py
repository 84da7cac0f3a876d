"""The protocol planned before it starts: every step in order, where it runs, its memory and time.

`plan_protocol(config, out)` lists the steps `run_protocol` will take (from the same run list,
recipes.protocol_runs), each with its command, its processes and `mftlab plan`'s peak memory per
GPU and time (mftlab.plan.planner), from the backbone's config alone: no weights are loaded. The
model every step plans is the backbone's shape (every later model is a fine-tuned copy of it).

- training steps plan as `mftlab train` with the runtime applied (recipes.step_runner);
- random / magnitude masks and Wanda calibration as an evaluation of one batch (the model plus one
  forward), SNIP as mask training of the targeted layers (its backward), in this process;
- scoring as an evaluation at the scoring batch over every test and validation record;
- the landscape as `mftlab landscape --plane models`; mask statistics, criteria and overlap run on
  the CPU in this process (host memory, not planned).

`ProtocolPlan.misfits()` are the steps whose peak exceeds the runtime's memory limit, each with
what to change; `mftlab protocol` refuses to start while there are any (unless --force), and
`--dry-run` prints the plan and writes it to OUT/plan.md (and plan.json, which the report reads).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass, replace

from mftlab.errors import ConfigError
from mftlab.plan.planner import PlanConfig, plan
from mftlab.plan.terms import GIB, GPUS, fmt_bytes, fmt_seconds
from mftlab.recipes import protocol_runs
from mftlab.recipes.launch import launch_command
from mftlab.recipes.methods import NAMES
from mftlab.recipes.step_runner import CLI, runtime_train_config
from mftlab.recipes.train_command import train_arguments
from mftlab.recipes.variants import describe, draw_seeds, variant_name
from mftlab.training.data import read_rows

PLAN_MD = "plan.md"
PLAN_JSON = "plan.json"
SCORE_BATCH = 128  # the scoring batch when the runtime gives none (recipes.steps.evaluate_method)
CALIBRATION_BATCH = 16  # Wanda / SNIP batches when the runtime gives none (recipes.steps.make_pruning_mask)
LANDSCAPE_BATCH = 64  # the landscape's batch when the runtime gives none (recipes.protocol_analysis)


@dataclass(frozen=True)
class StepPlan:
    label: str
    kind: str  # train | mask | score | landscape | analysis
    folder: str  # relative to OUT: the key the run's records use
    processes: int
    command: str
    memory_bytes: float | None  # peak per GPU (None: host memory, not planned)
    seconds: float | None
    fix: str = ""  # what to change when it does not fit


@dataclass(frozen=True)
class ProtocolPlan:
    steps: list[StepPlan]
    card: str  # what memory and time assume
    limit_bytes: float | None  # per GPU; None: nothing to check against (CPU without a limit)

    def misfits(self) -> list[StepPlan]:
        if self.limit_bytes is None:
            return []
        return [s for s in self.steps if s.memory_bytes is not None and s.memory_bytes > self.limit_bytes]

    def planned_gib(self) -> dict[str, float]:
        """Step folder -> planned peak GiB per GPU (what the run records beside its measurement)."""
        return {s.folder: round(s.memory_bytes / GIB, 3) for s in self.steps if s.memory_bytes is not None}

    def schedule(self) -> list:
        """Every step's folder, kind and planned seconds: where the run's ETA starts (mftlab.progress.run_state)."""
        from mftlab.progress.run_state import PlannedStep

        return [PlannedStep(s.folder, s.kind, s.seconds) for s in self.steps]

    def misfit_lines(self) -> list[str]:
        limit = fmt_bytes(self.limit_bytes) if self.limit_bytes is not None else ""
        return [
            f"does not fit: {s.label} needs {fmt_bytes(s.memory_bytes)} per GPU of {limit}; {s.fix}"
            for s in self.misfits()
        ]

    def to_dict(self) -> dict:
        return {"card": self.card, "limit_bytes": self.limit_bytes, "steps": [asdict(s) for s in self.steps]}


# -- the steps ------------------------------------------------------------------------------------------
class _Planner:
    def __init__(self, config, out: str, lora: bool):
        self.config, self.out, self.lora = config, out, lora
        self.runtime = config.runtime
        self.card = "cpu" if self.runtime.on_cpu() else self.runtime.gpu
        self.model = config.backbone  # every later model is a fine-tuned copy of it
        self.shapes = {}

    def _shape(self, spec):
        from mftlab.models.shapes import model_shape

        key = repr(spec)
        if key not in self.shapes:
            self.shapes[key] = model_shape(self.model, spec)
        return self.shapes[key]

    def _plan(self, **options):
        c = PlanConfig(model=self.model, gpu=self.card, **options)
        needs = (c.task == "train" and c.method != "fft") or (c.task == "landscape" and not c.default_targets())
        shape, targets = self._shape(c.target_spec() if needs else None)
        return plan(c, shape, targets)

    def rel(self, folder: str) -> str:
        return os.path.relpath(folder, self.out)

    def _where(self, launched: bool) -> int:
        return self.runtime.processes if launched else 1

    def train(self, run) -> StepPlan:
        cfg = runtime_train_config(run.config, self.runtime)
        launched = self.runtime.launched
        records = len(read_rows(cfg.data))
        epochs = cfg.epochs if cfg.max_steps is None else cfg.max_steps * cfg.batch_size / records
        try:
            p = self._plan(
                task="train",
                method=cfg.method,
                targets=cfg.targets,
                layers=cfg.layers,
                exclude=cfg.exclude,
                score_dtype=cfg.score_dtype,
                dtype=cfg.dtype,
                precision=cfg.precision,
                batch_size=cfg.batch_size,
                eval_batch_size=cfg.eval_batch_size if cfg.eval_every else 0,
                grad_accum=cfg.grad_accum,
                seq_len=cfg.max_seq_len,
                gpus=self._where(launched),
                sharding=cfg.sharding,
                gradient_checkpointing=cfg.gradient_checkpointing,
                pure_bf16=cfg.pure_bf16,
                examples=records,
                epochs=epochs,
                lora_r=cfg.lora_r,
            )
        except ConfigError as exc:
            raise ConfigError(f"{run.label}: {exc}") from None
        program = CLI + ["train", *train_arguments(cfg)]
        command = launch_command(self.runtime, program) if launched else ["mftlab", *program[2:]]
        return StepPlan(
            run.label,
            "train",
            self.rel(run.folder),
            self._where(launched),
            shlex.join(command),
            p.memory_per_gpu,
            p.total_seconds,
            self._train_fix(cfg),
        )

    def _train_fix(self, cfg) -> str:
        r, tips = self.runtime, []
        if cfg.method == "fft" and r.fft_sharding != "fsdp":
            tips.append("runtime.fft_sharding: fsdp (with processes > 1)")
        if not r.gradient_checkpointing:
            tips.append("runtime.gradient_checkpointing: true")
        micro = cfg.batch_size // max(1, self._where(r.launched) * cfg.grad_accum)
        if micro > 1:
            tips.append(f"runtime.grad_accum: {cfg.grad_accum * 2} (micro-batch {micro} -> {micro // 2})")
        tips.append(f"runtime.processes: {r.processes * 2}" if cfg.method == "fft" else "runtime.dtype: bfloat16")
        return "try " + ", ".join(tips)

    def mask(self, label: str, folder: str, snip: bool = False, calibrated: bool = False) -> StepPlan:
        t, dtype = self.config.training, self.runtime.dtype or "auto"
        batch = (self.runtime.calibration_batch_size or CALIBRATION_BATCH) if calibrated or snip else 1
        if snip:  # a backward pass through the targeted layers
            p = self._plan(
                task="train",
                method="mask",
                layers=self.config.layers,
                dtype=dtype,
                batch_size=batch,
                eval_batch_size=0,
                seq_len=t.max_seq_len,
            )
        else:  # the model and one forward pass
            p = self._plan(task="eval", dtype=dtype, batch_size=batch, seq_len=t.max_seq_len)
        fix = (
            f"try runtime.calibration_batch_size: {max(1, batch // 2)}" if batch > 1 else "try runtime.dtype: bfloat16"
        )
        return StepPlan(label, "mask", self.rel(folder), 1, "(in this process)", p.memory_per_gpu, None, fix)

    def _worker_command(self, folder: str, task: str) -> str:
        """The launched worker's command line for a scoring / benchmark / landscape step (StepRunner._launch_worker)."""
        if not self.runtime.launched:
            return "(in this process)"
        spec = os.path.join(folder, f"{task}-spec.json")
        return shlex.join(launch_command(self.runtime, CLI + ["protocol-step", spec]))

    def score(self, label: str, folder: str, models: int = 1) -> StepPlan:
        t, launched = self.config.training, self.runtime.launched
        records = sum(len(read_rows(d.test)) for d in self.config.domains.values())
        batch = self.runtime.eval_batch_size or SCORE_BATCH
        p = self._plan(
            task="eval",
            dtype=self.runtime.dtype or "auto",
            batch_size=batch,
            seq_len=t.max_seq_len,
            gpus=self._where(launched),
            examples=records * models,
        )
        command = self._worker_command(folder, "score")
        fix = f"try runtime.eval_batch_size: {max(1, batch // 2)}"
        return StepPlan(
            label, "score", self.rel(folder), self._where(launched), command, p.memory_per_gpu, p.total_seconds, fix
        )

    def benchmark(self, label: str, folder: str, models: int) -> StepPlan:
        """lm-eval on a domain's tasks: the memory of an evaluation at the config's evaluation batch; the
        time is not planned (it depends on the tasks' generation lengths)."""
        launched, batch = self.runtime.launched, self.config.evaluation.batch_size
        p = self._plan(
            task="eval", dtype=self.runtime.dtype or "auto", batch_size=batch, seq_len=self.config.training.max_seq_len
        )
        command = self._worker_command(folder, "benchmark")
        fix = f"try evaluation.batch_size: {max(1, batch // 2)}"
        return StepPlan(
            label, "benchmark", self.rel(folder), self._where(launched), command, p.memory_per_gpu, None, fix
        )

    def landscape(self, label: str, folder: str) -> StepPlan:
        s, launched = self.config.landscape, self.runtime.launched
        p = self._plan(
            task="landscape",
            plane="models",
            dtype=self.runtime.dtype or "auto",
            batch_size=self.runtime.eval_batch_size or LANDSCAPE_BATCH,
            seq_len=self.config.training.max_seq_len,
            gpus=self._where(launched),
            grid=f"{s.grid[0]}x{s.grid[1]}",
            landscape_tokens=s.tokens,
        )
        command = self._worker_command(folder, "landscape")
        batch = self.runtime.eval_batch_size or LANDSCAPE_BATCH
        fix = (
            f"try runtime.eval_batch_size: {max(1, batch // 2)}, runtime.dtype: bfloat16 (the plane holds three models)"
        )
        return StepPlan(
            label, "landscape", self.rel(folder), self._where(launched), command, p.memory_per_gpu, p.total_seconds, fix
        )

    def analysis(self, label: str, folder: str) -> StepPlan:
        return StepPlan(label, "analysis", self.rel(folder), 1, "(in this process, on the CPU)", None, None, "")


def _domain_steps(planner, config, out: str, seed: int, domain: str, *, backbone: str, lora: bool) -> list[StepPlan]:
    """One domain's trainings and masks, in the order the protocol runs them."""
    runs = protocol_runs.domain_runs(config, out, seed, domain, backbone, lora=lora)
    root, methods = protocol_runs.domain_root(out, seed, domain), config.methods
    where, baselines = f"{domain} (seed {seed})", os.path.join(root, "baselines")
    found = [planner.train(r) for r in runs if r.key != "lora"]
    if "random" in methods:
        n = len(draw_seeds(seed, config.random_seeds))
        found.append(planner.mask(f"{where}: random masks ({n} draws)", baselines))
    if "magnitude" in methods:
        found.append(planner.mask(f"{where}: magnitude mask", baselines))
    if "wanda" in methods:
        found.append(planner.mask(f"{where}: Wanda mask (calibration)", baselines, calibrated=True))
    if "snip" in methods:
        found.append(planner.mask(f"{where}: SNIP mask (calibration)", baselines, snip=True))
    return found + [planner.train(r) for r in runs if r.key == "lora"]


def plan_protocol(config, out: str, lora: bool) -> ProtocolPlan:
    """Every step of `run_protocol(config, out)` in order, planned (config files only, no weights)."""
    planner = _Planner(config, out, lora)
    found: list[StepPlan] = []
    pre = protocol_runs.backbone_run(config, out)
    if pre is not None:
        found.append(planner.train(pre))
    backbone = protocol_runs.backbone_model(config, out)
    seeds = range(config.seed, config.seed + config.seeds)
    methods = config.methods
    for seed in seeds:
        for domain in config.domains:
            found += _domain_steps(planner, config, out, seed, domain, backbone=backbone, lora=lora)
        for domain in config.domains:
            folder = os.path.join(protocol_runs.domain_root(out, seed, domain), "eval")
            scored = [m for m in methods if m not in ("mft", "lora")] + (["lora"] if lora else [])
            labels = [NAMES[m] for m in scored] + [f"MFT ({describe(variant_name(*v))})" for v in config.mft_variants]
            if planner.runtime.launched:  # one launch scores every model of the domain (StepRunner.score_ahead)
                n = len(labels) + (config.random_seeds - 1 if "random" in methods else 0)
                found.append(planner.score(f"{domain}: scoring {n} models", folder, models=n))
            else:
                found += [planner.score(f"{domain}: scoring {label}", folder) for label in labels]
        for domain, files in config.domains.items():
            if files.tasks:  # every method (the chosen MFT variant once) on the domain's lm-eval tasks
                folder = os.path.join(protocol_runs.domain_root(out, seed, domain), "eval")
                n = (
                    len([m for m in methods if m != "lora"])
                    + int(lora)
                    + (config.random_seeds - 1 if "random" in methods else 0)
                )
                found.append(planner.benchmark(f"{domain}: lm-eval {', '.join(files.tasks)} ({n} models)", folder, n))
    root = os.path.join(out, "analysis")
    for domain in config.domains:
        found.append(
            planner.analysis(f"{domain}: mask statistics and training dynamics", os.path.join(root, f"stats-{domain}"))
        )
    for domain in config.domains:
        if any(m in methods for m in ("wanda", "snip", "magnitude", "random")):
            found.append(
                planner.analysis(f"{domain}: MFT mask vs pruning criteria", os.path.join(root, f"criteria-{domain}"))
            )
    if len(config.domains) > 1:
        found.append(planner.analysis("overlap of the domain masks", os.path.join(root, "overlap")))
    if "continued_fft" in methods:
        for domain in config.domains:
            folder = os.path.join(root, f"landscape-{domain}")
            found.append(planner.landscape(f"loss landscape (landscape-{domain})", folder))
    return ProtocolPlan(found, planner.card, config.runtime.memory_limit_bytes())


# -- writing it ---------------------------------------------------------------------------------------------
def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else fmt_seconds(seconds)


def _gib(value: float | None) -> str:
    return f"{value / GIB:.2f} GiB" if value is not None else "host"


def plan_lines(p: ProtocolPlan, runtime) -> list[str]:
    """The plan as the terminal shows it: a header, then per step one line and its command."""
    card = GPUS[p.card].name
    limit = f"limit {p.limit_bytes / GIB:.1f} GiB per GPU" if p.limit_bytes is not None else "no memory limit (CPU)"
    lines = [
        f"plan: {len(p.steps)} steps; {runtime.processes} process(es) per launched step, device {runtime.device}, "
        f"dtype {runtime.dtype or 'auto'}, FFT sharding {runtime.fft_sharding}, grad_accum {runtime.grad_accum}, "
        f"checkpointing {'on' if runtime.gradient_checkpointing else 'off'}; memory and time for {card}, {limit}",
    ]
    total = 0.0
    for k, s in enumerate(p.steps, 1):
        time = _duration(s.seconds)
        total += s.seconds or 0.0
        over = "  DOES NOT FIT" if s in p.misfits() else ""
        lines.append(f"{k:3d}. {s.label}: {s.processes} proc, peak {_gib(s.memory_bytes)}/GPU, {time}{over}")
        lines.append(f"     {s.command}")
    lines.append(f"planned compute time: {_duration(total)} (training, scoring and landscapes; loading not counted)")
    return lines


def plan_markdown(p: ProtocolPlan, runtime, config_file: str) -> str:
    card = GPUS[p.card].name
    rows = [
        f"# Plan of `mftlab protocol {config_file}`",
        "",
        f"Runtime: {runtime.processes} process(es) per launched step, device `{runtime.device}`, dtype "
        f"`{runtime.dtype or 'auto'}`, FFT sharding `{runtime.fft_sharding}`, grad_accum {runtime.grad_accum}, "
        f"gradient checkpointing {'on' if runtime.gradient_checkpointing else 'off'}. Memory and time are "
        f"`mftlab plan`'s estimates for {card}"
        + (f", checked against {p.limit_bytes / GIB:.1f} GiB per GPU." if p.limit_bytes is not None else "."),
        "",
        "| # | step | processes | peak / GPU | time | fits |",
        "|---|---|---|---|---|---|",
    ]
    misfits = p.misfits()
    for k, s in enumerate(p.steps, 1):
        time = _duration(s.seconds)
        fits = "no" if s in misfits else ("yes" if s.memory_bytes is not None and p.limit_bytes is not None else "-")
        rows.append(f"| {k} | {s.label} | {s.processes} | {_gib(s.memory_bytes)} | {time} | {fits} |")
    rows += ["", "## Commands", ""]
    for k, s in enumerate(p.steps, 1):
        rows += [f"{k}. {s.label}", "", f"    {s.command}", ""]
    return "\n".join(rows) + "\n"


def write_plan(p: ProtocolPlan, runtime, out: str, config_file: str) -> str:
    from mftlab.files.atomic import write_text_atomic
    from mftlab.files.results import write_json

    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, PLAN_JSON), p.to_dict())
    path = os.path.join(out, PLAN_MD)
    write_text_atomic(path, plan_markdown(p, runtime, config_file))
    return path


def with_overrides(config, processes: int | None, device: str | None):
    """`config` with the command line's --processes / --device applied to its runtime."""
    return replace(config, runtime=config.runtime.with_overrides(processes, device))

"""The one training loop, on accelerate, for MFT (`mask`), full fine-tuning (`fft`) and LoRA (`lora`).

    train(TrainConfig(model=..., data=..., out=...), progress=callback) -> TrainResult

Per optimizer step: `batch_size` examples (a seeded permutation per epoch, so the order depends
only on (seed, step)) are split over the processes and into `grad_accum` micro-batches; the loss
is the token-weighted mean over the answer tokens of the whole step; then clipping, AdamW, the
linear warm-up/decay schedule, and (method mask) one recomputation of every keep-mask from the
scores. Only the main process writes files; the library never prints (progress goes to the
callback as `TrainProgress` events).

`_TrainingRun` holds one run's state; `_train_in_folder` calls its steps in order: set-up (data,
keep-masks, resume, the wrapped model, the optimizer), the step-0 evaluation, the optimizer steps
(each followed by its log row, evaluation and checkpoint), finish. The mechanics of one step are in
mftlab.training.optimizer_step, the keep-masks' refresh and flip counts in mftlab.training.keep_masks.

Scale: `--sharding fsdp` shards the model with FSDP2 instead of DDP (mftlab.training.sharding, with
sharded checkpoints in mftlab.training.sharded_checkpoint); 16-bit trainable weights are stepped as fp32
master copies (mftlab.training.master_weights) unless `--pure-bf16`; `--gradient-checkpointing`.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from mftlab.errors import ConfigError
from mftlab.files.folder_lock import hold_folder
from mftlab.mft.masking import detach_masks
from mftlab.models.device import resolve_device
from mftlab.models.loading import LoadedModel
from mftlab.models.tokenizer import padding_id
from mftlab.training import checkpoint as ckpt
from mftlab.training import sharded_checkpoint as sckpt
from mftlab.training import sharding
from mftlab.training.artifacts import RunArtifacts
from mftlab.training.config import TrainConfig
from mftlab.training.data import DataReport, load_examples
from mftlab.training.dist_faults import distributed_faults, process_group_timeout
from mftlab.training.evaluation import EvalResult, evaluate
from mftlab.training.keep_masks import KeepMasks
from mftlab.training.model_setup import disable_gradient_checkpointing, prepare_model, trainable_parameters
from mftlab.training.optimizer_step import Optimization, accumulate_gradients, check_finite_loss
from mftlab.training.peak_memory import peak_memory
from mftlab.training.run_outputs import MetricsLog, check_out_dir, start_out_dir
from mftlab.training.step0 import evaluate_step0
from mftlab.training.trackers import RunTrackers, check_report_to


@dataclass
class TrainProgress:
    """One progress event: `start`, `step` (after every optimizer step, with its loss), `log`, `eval`,
    `checkpoint`, `best`, `info`, `warning` (its message starts with "warning:") or `done`."""

    event: str
    step: int
    total_steps: int
    metrics: dict = field(default_factory=dict)
    message: str = ""


@dataclass
class TrainResult:
    out_dir: str
    method: str
    steps: int
    final_loss: float | None
    output_path: str  # OUT/mask.safetensors, OUT/model or OUT/adapter
    mask_ratio: float | None = None  # realised, method mask
    best_step: int | None = None
    best_eval_loss: float | None = None
    eval: EvalResult | None = None  # last evaluation, when --eval-data is given
    data: DataReport | None = None


# -- data order ---------------------------------------------------------------------------------
def steps_per_epoch(n_examples: int, batch_size: int) -> int:
    return max(1, math.ceil(n_examples / batch_size))


def step_indices(n_examples: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Example indices of optimizer step `step` (0-based): a pure function of (seed, step).

    Each epoch is a seeded permutation; the last batch of an epoch is topped up from its start,
    so every step sees exactly `batch_size` examples.
    """
    per_epoch = steps_per_epoch(n_examples, batch_size)
    epoch, offset = divmod(step, per_epoch)
    order = torch.randperm(n_examples, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    chosen = order[offset * batch_size : (offset + 1) * batch_size]
    while len(chosen) < batch_size:
        chosen += order[: batch_size - len(chosen)]
    return chosen


# -- model set-up -------------------------------------------------------------------------------
def _precision(config: TrainConfig) -> str:
    on_cuda = resolve_device(config.device).type == "cuda"
    bf16_ok = on_cuda and torch.cuda.is_bf16_supported()
    if config.precision == "bf16" and not bf16_ok:
        raise ConfigError("--precision bf16 needs a CUDA device with bf16 support; use --precision fp32 here")
    return "bf16" if config.precision == "bf16" or (config.precision == "auto" and bf16_ok) else "no"


# -- one run, step by step ----------------------------------------------------------------------
class _TrainingRun:
    """One run inside its folder: set up (data, masks, resume, the wrapped model, the optimizer),
    then optimizer steps, each followed by its log row, evaluation and checkpoint, then the result."""

    def __init__(self, config: TrainConfig, accelerator, notify: Callable[[TrainProgress], None], *, micro: int):
        self.config, self.accelerator, self.notify, self.micro = config, accelerator, notify, micro
        self.main, self.world = accelerator.is_main_process, accelerator.num_processes
        self.sharded = config.sharding == "fsdp"
        self.resume: ckpt.Checkpoint | None = None
        self.step, self.best_loss, self.best_step = 0, None, None
        self.last_loss: float | None = None
        self.last_eval: EvalResult | None = None

    def warn(self, message: str) -> None:
        self.notify(TrainProgress("warning", 0, 0, message=message))

    # -- set-up ---------------------------------------------------------------------------------
    def set_up(self, model, tokenizer, layers: dict | None, *, rank0_loads: bool) -> None:
        """Everything before the first step, in the order the processes must share (collectives)."""
        config = self.config
        self.tokenizer, self.layers = tokenizer, layers
        self._load_data()
        self.per_epoch = steps_per_epoch(len(self.examples), config.batch_size)
        self.total = config.max_steps or math.ceil(config.epochs * self.per_epoch)
        selection = config.selection
        self.masks = KeepMasks(layers, selection, self.sharded) if layers is not None else None
        sharded_resume = self._find_checkpoint(model)
        if self.main:
            start_out_dir(config)
            ckpt.remove_partial(config.out)
        self.accelerator.wait_for_everyone()
        self._wrap_model(model, rank0_loads)
        trainable = trainable_parameters(self.unwrapped)
        self.n_trainable = sum(p.numel() for p in trainable.values())
        initial = self.resume.trainable if self.resume is not None else None
        self.opt = Optimization.build(config, trainable, self.total, sharded=self.sharded, initial=initial)
        if self.masks is not None and self.sharded:
            self.masks.shard()
        self._restore(sharded_resume)
        if self.masks is not None:
            self.masks.start(resumed=self.resume is not None)
        self.metrics = MetricsLog(config.out, self.step if self.resume is not None else None) if self.main else None
        self.trackers = RunTrackers(config.report_to, config.out, config.to_dict()) if self.main else None

    def _load_data(self) -> None:
        config, tokenizer = self.config, self.tokenizer
        self.examples, self.report = load_examples(
            config.data,
            tokenizer,
            config.max_seq_len,
            data_fraction=config.data_fraction,
            seed=config.seed,
            skip_bad=config.skip_bad,
        )
        self.eval_examples = None
        if config.eval_data:
            self.eval_examples, _ = load_examples(
                config.eval_data, tokenizer, config.max_seq_len, seed=config.seed, skip_bad=config.skip_bad
            )
        self.pad_id = padding_id(tokenizer)
        for problem in self.report.skipped[:5]:
            self.notify(TrainProgress("info", 0, 0, message=f"skipped: {problem}"))

    def _warn_precision(self, model, load_dtype: torch.dtype) -> None:
        config = self.config
        if config.pure_bf16 and sharding.needs_master([p for p in model.parameters() if p.requires_grad], False):
            self.warn(
                "warning: --pure-bf16: 16-bit weights are stepped without fp32 master copies; updates below the "
                "bf16 spacing are lost"
            )
        if config.dtype == "auto" and load_dtype == torch.float16 and _precision(config) == "bf16":
            self.warn(
                "warning: --dtype auto loaded the model in float16 (its config says so); this GPU supports "
                "bf16, which has float32's range: pass --dtype bfloat16"
            )

    def _wrap_model(self, model, rank0_loads: bool) -> None:
        """Shard the model (FSDP2) or let accelerate prepare it (DDP); the artifacts writer follows it."""
        config, layers = self.config, self.layers
        load_dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        self._warn_precision(model, load_dtype)
        self.out = RunArtifacts(config, self.tokenizer, layers, load_dtype, self.main, self.sharded)
        if self.sharded:
            self.out.fingerprints = sharding.base_fingerprints(layers) if layers is not None and self.main else None
            param_dtype = sharding.fsdp_param_dtype(config.precision, _precision(config), model)
            device = self.accelerator.device
            model = unwrapped = sharding.shard_loaded(model, device, config.pure_bf16, param_dtype, rank0_loads)
        else:
            with warnings.catch_warnings():  # accelerate's note on broadcast_buffers; `keep` is never rank-local
                warnings.simplefilter("ignore", FutureWarning)
                model = self.accelerator.prepare(model)
            unwrapped = self.accelerator.unwrap_model(model)
        self.model, self.unwrapped = model, unwrapped
        self.out.model = unwrapped

    # -- resume ---------------------------------------------------------------------------------
    def _find_checkpoint(self, model) -> tuple[str, dict] | None:
        """With --resume: the checkpoint to continue from. Unsharded trainable weights are copied in now
        (before `prepare`); a sharded checkpoint is only located here (returned) and loaded once the
        model is sharded."""
        config = self.config
        if config.resume and self.sharded:
            return sckpt.latest_sharded_info(config.out, self.warn)
        if config.resume:
            self.resume = ckpt.latest_checkpoint(config.out, self.warn)
            params = dict(model.named_parameters())
            with torch.no_grad():
                for name, tensor in self.resume.trainable.items():
                    params[name].copy_(tensor)
        return None

    def _restore(self, sharded_resume: tuple[str, dict] | None) -> None:
        """The resumed checkpoint's optimizer, schedule, RNG states, step and best evaluation."""
        if sharded_resume is not None:
            self.resume = sckpt.load_sharded_checkpoint(*sharded_resume, self.model, self.opt.optimizer)
        if self.resume is None:
            return
        state, info = self.resume.state, self.resume.info
        self.opt.load(state, sharded=self.sharded)
        ckpt.restore_rng(state["rng"])
        self.step, self.best_loss, self.best_step = self.resume.step, info.get("best_eval_loss"), info.get("best_step")

    # -- before the first step ------------------------------------------------------------------
    def evaluate_step0(self) -> None:
        """Method mask with --eval-data, on a fresh run: the initial mask's damage, as the step-0 row."""
        if self.masks is None or self.eval_examples is None or self.resume is not None:
            return
        row0, masked0, warning = evaluate_step0(
            self.unwrapped,
            self.tokenizer,
            self.layers,
            self.eval_examples,
            batch_size=self.config.eval_batch_size,
            score_init=self.config.score_init,
            device=self.accelerator.device,
            distributed=self.world > 1,
        )
        self._record(row0)
        self.notify(TrainProgress("eval", 0, 0, masked0.to_dict()))
        self.notify(TrainProgress("log", 0, 0, row0))
        if warning:
            self.notify(
                TrainProgress("warning", 0, 0, {k: row0[k] for k in ("eval_loss", "eval_loss_unmasked")}, warning)
            )

    def announce_start(self) -> None:
        metrics = {
            "examples": len(self.examples),
            "steps_per_epoch": self.per_epoch,
            "processes": self.world,
            "trainable": self.n_trainable,
        }
        self.notify(TrainProgress("start", self.step, self.total, metrics))

    # -- the steps ------------------------------------------------------------------------------
    def train_steps(self) -> None:
        """Optimizer steps up to the total, each followed by its log row, evaluation and checkpoint."""
        config = self.config
        self.model.train()
        self.window = torch.zeros(3, dtype=torch.float64)  # nll, label tokens, input tokens since the last log
        self.window_start = time.perf_counter()
        try:
            while self.step < self.total:
                step_loss, current_lr = self.optimizer_step()
                row = self._window_row(current_lr) if self._due(config.log_every) else None
                if self.eval_examples is not None and config.eval_every and self._due(config.eval_every):
                    row = self.evaluate_and_keep_best(row)
                if row is not None:
                    self.log(row)
                if config.save_every and self.step % config.save_every == 0 and self.step < self.total:
                    self.save_checkpoint()  # the last step writes the final artifact instead
                self.notify(TrainProgress("step", self.step, self.total, {"loss": step_loss}))
        finally:
            if self.metrics is not None:
                self.metrics.close()
                self.trackers.finish()

    def _due(self, every: int) -> bool:
        """Whether a log or an evaluation every `every` steps falls on this step (the last step always does)."""
        return self.step % every == 0 or self.step == self.total

    def optimizer_step(self) -> tuple[float, float]:
        """One optimizer step (and, method mask, one refresh of every keep-mask); (its loss, its lr)."""
        config = self.config
        ids = step_indices(len(self.examples), config.batch_size, config.seed, self.step)
        stats = accumulate_gradients(
            self.model,
            self.accelerator,
            self.examples,
            ids,
            micro=self.micro,
            accum=config.grad_accum,
            pad_id=self.pad_id,
            sharded=self.sharded,
        )
        step_loss = float(stats[0] / max(stats[1], 1))
        check_finite_loss(step_loss, self.step + 1, config.out)
        current_lr = self.opt.step()
        self.step += 1
        self.window += stats
        if self.masks is not None:
            self.masks.refresh()  # once per optimizer step
        return step_loss, current_lr

    def _window_row(self, current_lr: float) -> dict:
        """The log row of the steps since the last one (the window restarts)."""
        elapsed = max(time.perf_counter() - self.window_start, 1e-9)
        window = self.window
        self.last_loss = float(window[0] / max(window[1], 1))
        row = {
            "step": self.step,
            "epoch": round(self.step / self.per_epoch, 4),
            "loss": self.last_loss,
            "lr": current_lr,
            "tokens_per_s": float(window[2]) / elapsed,
        }
        if self.masks is not None:
            row.update(self.masks.log_fields())
        window.zero_()
        self.window_start = time.perf_counter()
        return row

    def evaluate_and_keep_best(self, row: dict | None) -> dict:
        """Evaluate now; a new best validation loss writes OUT/best. Returns the row with the eval fields."""
        self.last_eval = evaluate(
            self.unwrapped,
            self.tokenizer,
            self.eval_examples,
            self.config.eval_batch_size,
            generate=False,
            device=self.accelerator.device,
            distributed=self.world > 1,
        )
        evaluated = {"eval_loss": self.last_eval.loss, "eval_token_accuracy": self.last_eval.token_accuracy}
        row = dict(row or {"step": self.step}, **evaluated)
        if self.best_loss is None or self.last_eval.loss < self.best_loss:
            self.best_loss, self.best_step = self.last_eval.loss, self.step
            target = os.path.join(self.config.out, "best")
            if self.config.method == "mask":
                os.makedirs(target, exist_ok=True)
                target = os.path.join(target, "mask.safetensors")
            self.out.write(target, self.step)
            self.notify(TrainProgress("best", self.step, self.total, {"eval_loss": self.best_loss}))
        self.notify(TrainProgress("eval", self.step, self.total, self.last_eval.to_dict()))
        return row

    def _record(self, row: dict) -> None:
        row.update(peak_memory(self.accelerator.device, distributed=self.world > 1))  # every process takes part
        if self.main:
            self.metrics.write(row)
            self.trackers.log(row)

    def log(self, row: dict) -> None:
        """One metrics row: to metrics.jsonl, the trackers and the progress callback."""
        self._record(row)
        self.notify(TrainProgress("log", self.step, self.total, row))

    def save_checkpoint(self) -> None:
        """Checkpoint step `self.step` (every process takes part; FSDP writes a share each)."""
        config, opt, step = self.config, self.opt, self.step
        info = {"best_eval_loss": self.best_loss, "best_step": self.best_step, "epoch": step / self.per_epoch}
        mask = self.out.mask(step) if self.layers is not None and self.main else None
        if self.sharded:
            sckpt.save_sharded_checkpoint(
                config.out,
                step,
                self.unwrapped,
                opt.optimizer,
                opt.scheduler,
                info=info,
                mask=mask,
                keep=config.keep_checkpoints,
            )
        elif self.main:
            state = dict(opt.state(), rng=ckpt.capture_rng())
            info = dict(info, sharding="none", world_size=self.world)  # any count can resume it
            ckpt.save_checkpoint(config.out, step, opt.stepped, state, info, mask=mask, keep=config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.notify(TrainProgress("checkpoint", step, self.total, {"path": ckpt.checkpoint_dir(config.out, step)}))

    # -- finish ---------------------------------------------------------------------------------
    def finish(self) -> TrainResult:
        """Write the method's artifact (OUT/mask.safetensors, OUT/model or OUT/adapter) and report."""
        config = self.config
        out_name = {"mask": "mask.safetensors", "fft": "model", "lora": "adapter"}[config.method]
        output = os.path.join(config.out, out_name)
        self.out.write(output, self.step)
        self.accelerator.wait_for_everyone()
        ratio = self.masks.mask_ratio() if self.masks is not None else None
        result = TrainResult(
            config.out,
            config.method,
            self.step,
            self.last_loss,
            output,
            ratio,
            self.best_step,
            self.best_loss,
            self.last_eval,
            self.report,
        )
        self.notify(TrainProgress("done", self.step, self.total, {"output": output, "loss": self.last_loss}))
        return result


# -- the entry point: processes and the run folder ----------------------------------------------
def train(
    config: TrainConfig, progress: Callable[[TrainProgress], None] | None = None, loaded: LoadedModel | None = None
) -> TrainResult:
    """Train as `config` says and write the run folder; see the module docstring.

    `loaded` (optional) is an already loaded model; with method mask its modules are wrapped
    during training and restored afterwards, its weights untouched (with `--sharding fsdp` the
    model is sharded in place and is not usable afterwards).

    Example:
        >>> result = mftlab.train(mftlab.TrainConfig(model="tiny-llama", data="train.jsonl", out="run",
        ...                                          mask_ratio=0.1, max_steps=50))  # doctest: +SKIP
        >>> mftlab.Mask.load(result.output_path).mask_ratio  # doctest: +SKIP
        0.1
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, InitProcessGroupKwargs

    sharding.refuse_accelerate_sharding()
    device = resolve_device(config.device)  # a GPU that is not there fails here, before any work
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)  # accelerate trains on the current device (cuda:LOCAL_RANK by default)
    # cpu=True on a machine without a GPU: otherwise accelerate ignores torchrun's process group.
    timeout = InitProcessGroupKwargs(timeout=process_group_timeout(config.dist_timeout))
    with distributed_faults(config.dist_timeout):  # a process that never arrives fails like one that stops later
        accelerator = Accelerator(
            mixed_precision=_precision(config),
            cpu=device.type == "cpu",
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False), timeout],
        )
    # The main process owns OUT from before its first check to the end; the others wait for it.
    with distributed_faults(config.dist_timeout), hold_folder(config.out):
        return _train_in_folder(config, accelerator, progress, loaded)


def _train_in_folder(config, accelerator, progress, loaded) -> TrainResult:
    main = accelerator.is_main_process
    world, rank = accelerator.num_processes, accelerator.process_index
    check_out_dir(config)
    check_report_to(config.report_to)  # a missing tracker package fails before any work
    accelerator.wait_for_everyone()  # every process has checked OUT before the main one writes to it
    # Dropout and other global draws follow the seed (a checkpoint's RNG states replace this on resume).
    torch.manual_seed(config.seed * 1_000 + rank)
    micro, rem = divmod(config.batch_size, world * config.grad_accum)
    if rem or micro == 0:
        raise ConfigError(
            f"--batch-size {config.batch_size} is not a multiple of processes ({world}) x "
            f"--grad-accum ({config.grad_accum}); choose sizes that divide evenly"
        )
    notify = progress if (progress and main) else (lambda event: None)

    # Under FSDP only rank 0 reads the checkpoint; the others build the model on the meta device.
    rank0_loads = config.sharding == "fsdp" and world > 1 and loaded is None and not config.trust_remote_code
    model, tokenizer, layers = prepare_model(config, loaded, rank0_loads)
    started = config.sharding == "fsdp" and sharding.ensure_process_group(accelerator.device)
    try:
        run = _TrainingRun(config, accelerator, notify, micro=micro)
        run.set_up(model, tokenizer, layers, rank0_loads=rank0_loads)
        run.evaluate_step0()
        run.announce_start()
        run.train_steps()
        return run.finish()
    finally:
        if layers is not None:
            detach_masks(model)
        if config.gradient_checkpointing:
            disable_gradient_checkpointing(model)
        if started:
            torch.distributed.destroy_process_group()

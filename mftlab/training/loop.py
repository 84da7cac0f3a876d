"""The one training loop, on accelerate, for MFT (`mask`), full fine-tuning (`fft`) and LoRA (`lora`).

    train(TrainConfig(model=..., data=..., out=...), progress=callback) -> TrainResult

Per optimizer step: `batch_size` examples (a seeded permutation per epoch, so the order depends
only on (seed, step)) are split over the processes and into `grad_accum` micro-batches; the loss
is the token-weighted mean over the answer tokens of the whole step; then clipping, AdamW, the
linear warm-up/decay schedule, and (method mask) one recomputation of every keep-mask from the
scores. Only the main process writes files; the library never prints (progress goes to the
callback as `TrainProgress` events).

Scale: `--sharding fsdp` shards the model with FSDP2 instead of DDP (mftlab.training.sharding, with
sharded checkpoints in mftlab.training.sharded_checkpoint); 16-bit trainable weights are stepped as fp32
master copies (mftlab.training.master_weights) unless `--pure-bf16`; `--gradient-checkpointing`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch

from mftlab.errors import ConfigError, TrainingError
from mftlab.files.folder_lock import hold_folder
from mftlab.mft.flip_counter import FlipCounter
from mftlab.mft.masking import count_masked, detach_masks, refresh_masks
from mftlab.mft.warm_select import WarmSelector
from mftlab.models.device import resolve_device
from mftlab.models.loading import LoadedModel
from mftlab.models.tokenizer import padding_id
from mftlab.training import checkpoint as ckpt
from mftlab.training import sharded_checkpoint as sckpt
from mftlab.training import sharding
from mftlab.training.artifacts import RunArtifacts
from mftlab.training.config import TrainConfig
from mftlab.training.data import DataReport, Example, label_tokens, load_examples
from mftlab.training.dist_faults import distributed_faults, process_group_timeout
from mftlab.training.evaluation import EvalResult, collate, evaluate, training_nll
from mftlab.training.master_weights import MasterWeights
from mftlab.training.model_setup import disable_gradient_checkpointing, prepare_model, trainable_parameters
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


def _lr_lambda(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _accumulate_gradients(
    model,
    accelerator,
    examples: list[Example],
    ids: list[int],
    micro: int,
    accum: int,
    pad_id: int,
    sharded: bool = False,
) -> torch.Tensor:
    """Forward and backward over this process's share of one step; returns global (nll, label tokens, tokens).

    The loss is the token-weighted mean over the answer tokens of the whole step (all processes,
    all micro-batches), so the gradient does not depend on how the step is split.
    """
    world, rank = accelerator.num_processes, accelerator.process_index
    step_tokens = sum(label_tokens(examples[i]) for i in ids)
    mine = ids[rank * micro * accum : (rank + 1) * micro * accum]
    nll_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)  # read back once per step
    tokens = [0, 0]  # label tokens, input tokens: counted on the host from the CPU batches
    for m in range(accum):
        cpu_batch = collate([examples[i] for i in mine[m * micro : (m + 1) * micro]], pad_id)
        tokens[0] += cpu_batch.num_label_tokens
        tokens[1] += int(cpu_batch.attention_mask.sum())
        batch = cpu_batch.to(accelerator.device)
        # FSDP reduce-scatters every micro-batch into the sharded fp32 gradient (as torchtitan does):
        # skipping the sync would keep a full unsharded gradient on every process until the last one.
        sync = contextlib.nullcontext() if (m == accum - 1 or sharded) else accelerator.no_sync(model)
        with sync:
            with accelerator.autocast():
                nll = training_nll(model, batch)  # no argmax, no host sync
            accelerator.backward(nll * (world / max(step_tokens, 1)))  # x world: DDP and FSDP average gradients
        nll_sum += nll.detach().double()
    stats = torch.cat([nll_sum.reshape(1), torch.tensor(tokens, dtype=torch.float64, device=nll_sum.device)])
    return (accelerator.reduce(stats, "sum") if world > 1 else stats).cpu()


# -- the loop -----------------------------------------------------------------------------------
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
        return _run(config, accelerator, model, tokenizer, layers, micro, notify, rank0_loads)
    finally:
        if layers is not None:
            detach_masks(model)
        if config.gradient_checkpointing:
            disable_gradient_checkpointing(model)
        if started:
            torch.distributed.destroy_process_group()


def _run(config, accelerator, model, tokenizer, layers, micro, notify, rank0_loads=False) -> TrainResult:
    main, world = accelerator.is_main_process, accelerator.num_processes
    examples, report = load_examples(
        config.data, tokenizer, config.max_seq_len, config.data_fraction, config.seed, config.skip_bad
    )
    eval_examples = None
    if config.eval_data:
        eval_examples, _ = load_examples(
            config.eval_data, tokenizer, config.max_seq_len, 1.0, config.seed, config.skip_bad
        )
    pad_id = padding_id(tokenizer)
    for problem in report.skipped[:5]:
        notify(TrainProgress("info", 0, 0, message=f"skipped: {problem}"))

    per_epoch = steps_per_epoch(len(examples), config.batch_size)
    total = config.max_steps or math.ceil(config.epochs * per_epoch)
    selection = config.selection_config()
    sharded = config.sharding == "fsdp"
    # Flip counts compare with step 0 and the last log from bit-packed copies (one full mask held).
    flips = FlipCounter(refresh_masks(layers, selection)) if layers is not None and not sharded else None

    warn = lambda message: notify(TrainProgress("warning", 0, 0, message=message))  # noqa: E731
    resume, sharded_resume = None, None
    if config.resume and sharded:
        sharded_resume = sckpt.latest_sharded_info(config.out, warn)  # loaded once the model is sharded
    elif config.resume:
        resume = ckpt.latest_checkpoint(config.out, warn)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, tensor in resume.trainable.items():
                params[name].copy_(tensor)
    if main:
        start_out_dir(config)
        ckpt.remove_partial(config.out)
    accelerator.wait_for_everyone()

    load_dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
    if config.pure_bf16 and sharding.needs_master([p for p in model.parameters() if p.requires_grad], False):
        warn(
            "warning: --pure-bf16: 16-bit weights are stepped without fp32 master copies; updates below the "
            "bf16 spacing are lost"
        )
    if config.dtype == "auto" and load_dtype == torch.float16 and _precision(config) == "bf16":
        warn(
            "warning: --dtype auto loaded the model in float16 (its config says so); this GPU supports "
            "bf16, which has float32's range: pass --dtype bfloat16"
        )
    out = RunArtifacts(config, tokenizer, layers, load_dtype, main, sharded)
    if sharded:
        out.fingerprints = sharding.base_fingerprints(layers) if layers is not None and main else None
        param_dtype = sharding.fsdp_param_dtype(config.precision, _precision(config), model)
        model = unwrapped = sharding.shard_loaded(model, accelerator.device, config.pure_bf16, param_dtype, rank0_loads)
    else:
        with warnings.catch_warnings():  # accelerate's note on broadcast_buffers; `keep` is never rank-local
            warnings.simplefilter("ignore", FutureWarning)
            model = accelerator.prepare(model)
        unwrapped = accelerator.unwrap_model(model)
    out.model = unwrapped
    trainable = trainable_parameters(unwrapped)
    master = None
    if not sharded and sharding.needs_master(trainable.values(), config.pure_bf16):
        master = MasterWeights(trainable, resume.trainable if resume is not None else None)
    stepped = master.master if master is not None else trainable  # what AdamW steps (and checkpoints hold)
    lr = config.score_lr if config.method == "mask" else config.lr
    optimizer = torch.optim.AdamW(list(stepped.values()), lr=lr, weight_decay=config.weight_decay)
    warmup = math.ceil(config.warmup_ratio * total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(warmup, total))
    masks = sharding.ShardedMasks(layers) if sharded and layers is not None else None
    if masks is not None:  # the step-0 mask, from the initial scores (before a resumed checkpoint's)
        flips = FlipCounter(masks.refresh(selection))
    step, best_loss, best_step = 0, None, None
    if sharded_resume is not None:
        resume = sckpt.load_sharded_checkpoint(*sharded_resume, model, optimizer)
    if resume is not None:
        if not sharded:
            optimizer.load_state_dict(resume.state["optimizer"])
        scheduler.load_state_dict(resume.state["scheduler"])
        ckpt.restore_rng(resume.state["rng"])
        step, best_loss, best_step = resume.step, resume.info.get("best_eval_loss"), resume.info.get("best_step")
    warm = WarmSelector()
    refresh = (
        (lambda: masks.refresh(selection)) if masks is not None else (lambda: refresh_masks(layers, selection, warm))
    )
    keep = refresh() if layers is not None else None
    if flips is not None:  # packed before `prepare` moved the model
        flips.to(next(iter(keep.values())).device)
        if resume is not None:  # the first flips after a resume count from the resumed mask
            flips.restart(keep)
    metrics = MetricsLog(config.out, step if resume is not None else None) if main else None
    trackers = RunTrackers(config.report_to, config.out, config.to_dict()) if main else None
    if layers is not None and eval_examples is not None and resume is None:  # the initial mask, once
        row0, masked0, warning = evaluate_step0(
            unwrapped,
            tokenizer,
            layers,
            eval_examples,
            config.eval_batch_size,
            config.score_init,
            accelerator.device,
            distributed=world > 1,
        )
        row0.update(peak_memory(accelerator.device, distributed=world > 1))
        if main:
            metrics.write(row0)
            trackers.log(row0)
        notify(TrainProgress("eval", 0, 0, masked0.to_dict()))
        notify(TrainProgress("log", 0, 0, row0))
        if warning:
            notify(TrainProgress("warning", 0, 0, {k: row0[k] for k in ("eval_loss", "eval_loss_unmasked")}, warning))
    notify(
        TrainProgress(
            "start",
            step,
            total,
            {
                "examples": len(examples),
                "steps_per_epoch": per_epoch,
                "processes": world,
                "trainable": sum(p.numel() for p in trainable.values()),
            },
        )
    )

    model.train()
    window = torch.zeros(3, dtype=torch.float64)  # nll, label tokens, input tokens since the last log
    window_start, last_loss, last_eval = time.perf_counter(), None, None
    try:
        while step < total:
            ids = step_indices(len(examples), config.batch_size, config.seed, step)
            stats = _accumulate_gradients(model, accelerator, examples, ids, micro, config.grad_accum, pad_id, sharded)
            step_loss = float(stats[0] / max(stats[1], 1))
            if not math.isfinite(step_loss):
                saved = ckpt.list_checkpoints(config.out)
                where = f"the last good checkpoint is {saved[-1][1]}" if saved else "no checkpoint was written"
                raise TrainingError(
                    f"the loss became {step_loss} at step {step + 1}; {where}. Lower the learning "
                    "rate (--score-lr / --lr) or use --precision fp32"
                )
            if master is not None:
                master.grads_to_master()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(stepped.values()), config.max_grad_norm)
            current_lr = scheduler.get_last_lr()[0]
            optimizer.step()
            if master is not None:
                master.master_to_model()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            window += stats
            if layers is not None:
                keep = refresh()  # once per optimizer step

            row = None
            if step % config.log_every == 0 or step == total:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                last_loss = float(window[0] / max(window[1], 1))
                row = {
                    "step": step,
                    "epoch": round(step / per_epoch, 4),
                    "loss": last_loss,
                    "lr": current_lr,
                    "tokens_per_s": float(window[2]) / elapsed,
                }
                if layers is not None:
                    masked, n = count_masked(keep)
                    since_last, since_start = flips.count(keep)
                    row.update(mask_ratio=masked / n, flips=since_last, flips_since_start=since_start)
                window.zero_()
                window_start = time.perf_counter()
            if eval_examples is not None and config.eval_every and (step % config.eval_every == 0 or step == total):
                last_eval = evaluate(
                    unwrapped,
                    tokenizer,
                    eval_examples,
                    config.eval_batch_size,
                    generate=False,
                    device=accelerator.device,
                    distributed=world > 1,
                )
                row = dict(
                    row or {"step": step}, eval_loss=last_eval.loss, eval_token_accuracy=last_eval.token_accuracy
                )
                if best_loss is None or last_eval.loss < best_loss:
                    best_loss, best_step = last_eval.loss, step
                    target = os.path.join(config.out, "best")
                    if config.method == "mask":
                        os.makedirs(target, exist_ok=True)
                        target = os.path.join(target, "mask.safetensors")
                    out.write(target, step)
                    notify(TrainProgress("best", step, total, {"eval_loss": best_loss}))
                notify(TrainProgress("eval", step, total, last_eval.to_dict()))
            if row is not None:
                row.update(peak_memory(accelerator.device, distributed=world > 1))  # every process takes part
                if main:
                    metrics.write(row)
                    trackers.log(row)
                notify(TrainProgress("log", step, total, row))
            if config.save_every and step % config.save_every == 0 and step < total:
                _save(
                    config,
                    accelerator,
                    out,
                    stepped,
                    optimizer,
                    scheduler,
                    step,
                    {"best_eval_loss": best_loss, "best_step": best_step, "epoch": step / per_epoch},
                )
                notify(TrainProgress("checkpoint", step, total, {"path": ckpt.checkpoint_dir(config.out, step)}))
            notify(TrainProgress("step", step, total, {"loss": step_loss}))
    finally:
        if metrics is not None:
            metrics.close()
            trackers.finish()

    out_name = {"mask": "mask.safetensors", "fft": "model", "lora": "adapter"}[config.method]
    output = os.path.join(config.out, out_name)
    out.write(output, step)
    accelerator.wait_for_everyone()
    ratio = count_masked(keep)[0] / count_masked(keep)[1] if keep is not None else None
    result = TrainResult(
        config.out, config.method, step, last_loss, output, ratio, best_step, best_loss, last_eval, report
    )
    notify(TrainProgress("done", step, total, {"output": output, "loss": last_loss}))
    return result


def _save(config, accelerator, out, trainable, optimizer, scheduler, step, info) -> None:
    mask = out.mask(step) if out.layers is not None and accelerator.is_main_process else None
    if out.sharded:
        sckpt.save_sharded_checkpoint(
            config.out, step, out.model, optimizer, scheduler, info, mask, config.keep_checkpoints
        )
    elif accelerator.is_main_process:
        state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": ckpt.capture_rng()}
        info = dict(info, sharding="none", world_size=accelerator.num_processes)  # any count can resume it
        ckpt.save_checkpoint(config.out, step, trainable, state, info, mask, config.keep_checkpoints)
    accelerator.wait_for_everyone()

"""Every training run of the protocol, as a TrainConfig, known before any of them runs.

The protocol runs them (recipes.protocol) and the dry run plans them (recipes.protocol_plan) from
the same list, so the plan is the run: FFT from the backbone, continued FFT from FFT's best
checkpoint for as many steps as MFT, MFT for every variant of the grid from the same checkpoint,
LoRA from the backbone. Paths are the runs' folders under OUT; nothing is read but the training
files' record counts (MFT's length in steps).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mftlab.recipes.variants import describe, variant_name
from mftlab.training.config import TrainConfig
from mftlab.training.data import read_rows


@dataclass(frozen=True)
class TrainingRun:
    key: str  # fft, continued_fft, lora, or the MFT variant's name
    label: str  # the step's name in messages, records and the plan
    folder: str
    config: TrainConfig
    score_init: str | None = None  # MFT variants only
    score_lr: float | None = None


def _train_config(t, **kw) -> TrainConfig:
    return TrainConfig(
        batch_size=t.batch_size,
        max_seq_len=t.max_seq_len,
        eval_every=t.eval_every,
        log_every=t.eval_every,
        warmup_ratio=t.warmup_ratio,
        **kw,
    )


def backbone_run(config, out: str) -> TrainingRun | None:
    """Pre-training of the backbone (when the config has `pretrain`); its model is the protocol's backbone."""
    if config.pretrain is None:
        return None
    p, folder = config.pretrain, os.path.join(out, "backbone")
    train = TrainConfig(
        model=config.backbone,
        data=p.data,
        out=folder,
        method="fft",
        lr=p.lr,
        epochs=p.epochs,
        batch_size=p.batch_size,
        max_seq_len=p.max_seq_len,
        warmup_ratio=p.warmup_ratio,
        log_every=p.log_every,
        seed=config.seed,
    )
    return TrainingRun("backbone", "pre-training the backbone", folder, train)


def backbone_model(config, out: str) -> str:
    """The backbone every domain starts from: the configured one, or the pre-trained model's folder."""
    run = backbone_run(config, out)
    return config.backbone if run is None else os.path.join(run.folder, "model")


def domain_root(out: str, seed: int, domain: str) -> str:
    return os.path.join(out, f"seed-{seed}", domain)


def mft_steps(config, domain: str) -> int:
    """MFT's (and continued FFT's) length in optimizer steps: `mft_epochs` over the domain's training records."""
    t = config.training
    return max(1, round(t.mft_epochs * len(read_rows(config.domains[domain].train)) / t.batch_size))


def _mft_config(config, init: str, lr: float, steps: int, **kw) -> TrainConfig:
    """An MFT variant's TrainConfig: the configured layers and mask ratio, `steps` long, with about six
    checkpoints along the way, all kept (the dynamics analysis reads them)."""
    return _train_config(
        config.training,
        method="mask",
        layers=config.layers,
        mask_ratio=config.mask_ratio,
        score_init=init,
        score_lr=lr,
        max_steps=steps,
        save_every=max(1, steps // 6),
        keep_checkpoints=100,
        **kw,
    )


def _lora_config(t, **kw) -> TrainConfig:
    """LoRA's TrainConfig from the training settings `t`, on every layer (not only MFT's layer group)."""
    return _train_config(
        t,
        method="lora",
        lr=t.lora_lr,
        epochs=t.lora_epochs,
        layers=None,
        lora_r=t.lora_r,
        lora_alpha=t.lora_alpha,
        lora_dropout=t.lora_dropout,
        **kw,
    )


def domain_runs(config, out: str, seed: int, domain: str, backbone: str, *, lora: bool) -> list[TrainingRun]:
    """The training runs of one domain and seed, in the order the protocol runs them."""
    t, root = config.training, domain_root(out, seed, domain)
    files = config.domains[domain]
    common = dict(data=files.train, eval_data=files.validation, seed=seed)
    where = f"{domain} (seed {seed})"
    best = os.path.join(root, "fft", "best")
    steps = mft_steps(config, domain)
    folder = os.path.join(root, "fft")
    train = _train_config(t, model=backbone, out=folder, method="fft", lr=t.fft_lr, epochs=t.fft_epochs, **common)
    runs = [TrainingRun("fft", f"{where}: full fine-tuning", folder, train)]
    if "continued_fft" in config.methods:
        folder = os.path.join(root, "continued")
        train = _train_config(t, model=best, out=folder, method="fft", lr=t.fft_lr, max_steps=steps, **common)
        runs.append(TrainingRun("continued_fft", f"{where}: continued fine-tuning", folder, train))
    for init, lr in config.mft_variants:
        name = variant_name(init, lr)
        folder = os.path.join(root, f"mft-{name}")
        train = _mft_config(config, init, lr, steps, model=best, out=folder, **common)
        runs.append(TrainingRun(name, f"{where}: MFT ({describe(name)})", folder, train, init, lr))
    if lora:
        folder = os.path.join(root, "lora")
        train = _lora_config(t, model=backbone, out=folder, **common)
        runs.append(TrainingRun("lora", f"{where}: LoRA", folder, train))
    return runs

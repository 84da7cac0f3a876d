"""The training configuration: one frozen dataclass that validates itself (DESIGN.md style rule 2).

Defaults are the paper's MFT settings where they apply: mask ratio 0.1 per tensor, 2 epochs,
batch 8, learning rate 2e-5. The resolved config is written to `OUT/config.json` and into the
mask's `method` metadata. `load_config_file` reads a YAML or JSON file; `merge_config` lets
flags that the user gave win over the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.mft.masked_layer import SCORE_DTYPES
from mftlab.mft.masking import SCORE_INITS, SelectionConfig
from mftlab.mft.targeting import TargetSpec
from mftlab.training.trackers import parse_report_to

METHODS = ("mask", "fft", "lora")
PRECISIONS = ("auto", "bf16", "fp32")
SHARDINGS = ("none", "fsdp")
# Fields that may change between an interrupted run and its `--resume` without changing the result.
RESUMABLE_FIELDS = ("resume", "force", "save_every", "keep_checkpoints", "log_every", "max_steps", "epochs",
                    "gradient_checkpointing", "report_to", "dist_timeout")


@dataclass(frozen=True)
class TrainConfig:
    """Everything `mftlab train` needs; see `mftlab train --help` for each option.

    Example:
        >>> config = mftlab.TrainConfig(model="tiny-llama", data="train.jsonl", out="run", max_steps=50)
        >>> config.selection_config().mask_ratio
        0.1
    """

    model: str
    data: str
    out: str
    method: str = "mask"  # mask (MFT) | fft (full fine-tuning) | lora (needs peft)
    # model loading
    dtype: str = "auto"
    gguf_file: str | None = None
    trust_remote_code: bool = False
    # targeting (mask and lora)
    targets: str = "all-linear"
    layers: str | None = None
    exclude: str | None = None
    # mask selection and scores
    mask_ratio: float = 0.1
    selection: str = "topk"
    granularity: str = "tensor"
    threshold: float = -0.035
    min_keep_ratio: float = 0.01
    rank_by: str = "raw"
    score_init: str = "random"
    score_std: float = 0.02
    score_dtype: str = "fp32"
    score_lr: float = 2e-5
    # optimisation
    lr: float = 2e-5  # fft and lora
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    epochs: float = 2.0
    max_steps: int | None = None
    batch_size: int = 8  # examples per optimizer step, over all processes
    grad_accum: int = 1  # micro-batches per optimizer step on each process
    precision: str = "auto"  # auto = bf16 autocast where the device supports it, else fp32
    seed: int = 0
    # scale (mftlab.training.sharding, mftlab.training.master_weights)
    sharding: str = "none"  # none | fsdp (FSDP2, one unit per decoder layer)
    gradient_checkpointing: bool = False  # recompute each decoder layer in the backward pass
    pure_bf16: bool = False  # no fp32 master weights for 16-bit trainable parameters
    # data
    max_seq_len: int = 512
    data_fraction: float = 1.0
    skip_bad: bool = False
    eval_data: str | None = None
    eval_every: int = 0
    eval_batch_size: int = 16
    # lora
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    # outputs
    log_every: int = 10
    save_every: int = 0  # 0 = no intermediate checkpoints
    keep_checkpoints: int = 2
    resume: bool = False
    force: bool = False
    report_to: str = "none"  # tensorboard,wandb,mlflow (comma-separated) or none
    dist_timeout: float = 1800.0  # seconds a process waits for the others before the run fails (multi-process)
    mftlab_version: str = field(default=__version__)

    def __post_init__(self):
        def bad(name, value, fix):
            raise ConfigError.for_option(name, value, fix)

        if self.method not in METHODS:
            bad("method", self.method, f"is unknown; choose one of {', '.join(METHODS)}")
        if self.precision not in PRECISIONS:
            bad("precision", self.precision, f"is unknown; choose one of {', '.join(PRECISIONS)}")
        if self.sharding not in SHARDINGS:
            bad("sharding", self.sharding, f"is unknown; choose one of {', '.join(SHARDINGS)}")
        if self.sharding == "fsdp" and self.method == "lora":
            raise ConfigError("--sharding fsdp does not support --method lora; use --method mask or fft, or "
                              "--sharding none for LoRA")
        if self.score_init not in SCORE_INITS:
            bad("score_init", self.score_init, f"is unknown; choose one of {', '.join(SCORE_INITS)}")
        if self.score_dtype not in SCORE_DTYPES:
            bad("score_dtype", self.score_dtype, f"is unknown; choose one of {', '.join(SCORE_DTYPES)}")
        self.selection_config()  # validates ratio, selection, granularity, rank_by
        self.target_spec()
        for name in ("score_lr", "lr", "score_std"):
            if not getattr(self, name) > 0:
                bad(name, getattr(self, name), "must be positive (e.g. 2e-5)")
        for name in ("batch_size", "grad_accum", "max_seq_len", "eval_batch_size", "log_every", "keep_checkpoints",
                     "lora_r", "lora_alpha"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                bad(name, getattr(self, name), "must be a whole number of at least 1")
        for name in ("save_every", "eval_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                bad(name, getattr(self, name), "must be a whole number of at least 0 (0 = never)")
        if self.max_steps is not None and not (isinstance(self.max_steps, int) and self.max_steps >= 1):
            bad("max_steps", self.max_steps, "must be a whole number of at least 1")
        if not self.epochs > 0:
            bad("epochs", self.epochs, "must be positive (the paper trains 2 epochs)")
        if not 0.0 <= self.warmup_ratio < 1.0:
            bad("warmup_ratio", self.warmup_ratio, "is outside [0, 1); use e.g. 0.03")
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("--weight-decay and --max-grad-norm must be >= 0 (0 turns clipping off)")
        if not 0.0 < self.data_fraction <= 1.0:
            bad("data_fraction", self.data_fraction, "is outside (0, 1]; use e.g. 0.1 for 10% of the data")
        if not 0.0 <= self.lora_dropout < 1.0:
            bad("lora_dropout", self.lora_dropout, "is outside [0, 1)")
        parse_report_to(self.report_to)
        if not self.dist_timeout > 0:
            bad("dist_timeout", self.dist_timeout, "must be positive seconds (default 1800 = 30 minutes)")
        if self.eval_every and not self.eval_data:
            raise ConfigError(f"--eval-every {self.eval_every} needs --eval-data FILE to evaluate on")

    # -- derived objects ------------------------------------------------------------------
    def selection_config(self) -> SelectionConfig:
        return SelectionConfig(self.mask_ratio, self.selection, self.granularity, self.threshold,
                               self.min_keep_ratio, self.rank_by)

    def target_spec(self) -> TargetSpec:
        return TargetSpec.parse(self.targets, self.layers, self.exclude)

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config key '{unknown[0]}'; valid keys: {', '.join(sorted(known))}")
        values = {k: _coerce(k, v) for k, v in values.items() if k != "mftlab_version"}
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"incomplete config ({exc}); 'model', 'data' and 'out' are required") from None

    def differences(self, other: "TrainConfig") -> list[str]:
        """Fields (other than the resumable ones) whose values differ."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if k not in RESUMABLE_FIELDS + ("mftlab_version",) and a[k] != b[k]]


_FLOAT_FIELDS = {f.name for f in fields(TrainConfig) if f.type in ("float", float)}


def _coerce(name: str, value):
    # YAML 1.1 reads 2e-5 as a string; numbers written that way are still meant as numbers.
    if name in _FLOAT_FIELDS and isinstance(value, (str, int)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config value {name}={value!r} is not a number") from None
    return value


def load_config_file(path: str) -> dict:
    """Options from a YAML (.yaml / .yml) or JSON file; keys may use dashes or underscores."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file '{path}' does not exist; check the path")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as exc:  # yaml and json raise different types
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ConfigError(f"config file '{path}' cannot be parsed ({first}); fix its syntax") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping of option names to values")
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def merge_config(file_values: dict, flag_values: dict, given: set[str]) -> TrainConfig:
    """Config from defaults < file < flags the user actually gave (`given`)."""
    values = dict(flag_values)
    values.update({k: v for k, v in file_values.items() if k not in given})
    return TrainConfig.from_dict(values)

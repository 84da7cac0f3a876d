"""The training configuration: one frozen dataclass that validates itself (CONTRIBUTING.md, style rule 2).

Defaults are the paper's MFT settings where they apply: mask ratio 0.1 per tensor, 2 epochs,
batch 8, learning rate 2e-5. The mask selection options are one nested group, `selection:
SelectionConfig` (the object `mftlab.mask_model` takes); flags, `--config` keys and `config.json`
name them flat as before (`mftlab.option_groups`). The resolved config is written to
`OUT/config.json` and into the mask's `method` metadata. `load_config_file` reads a YAML or JSON
file; `merge_config` lets flags that the user gave win over the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.mft.masked_layer import SCORE_DTYPES
from mftlab.mft.masking import SCORE_INITS, SelectionConfig
from mftlab.mft.targeting import TargetSpec
from mftlab.models.device import DEVICES, check_device
from mftlab.models.loading import DTYPES
from mftlab.option_groups import GroupedConfig, flat_dict
from mftlab.options_meta import at_least, between, check_options, config_field, doc, group, option_names, positive
from mftlab.training.choices import METHODS, PRECISIONS, SHARDINGS
from mftlab.training.trackers import parse_report_to

# Fields that may change between an interrupted run and its `--resume` without changing the result.
RESUMABLE_FIELDS = (
    "resume",
    "force",
    "save_every",
    "keep_checkpoints",
    "log_every",
    "max_steps",
    "epochs",
    "gradient_checkpointing",
    "report_to",
    "dist_timeout",
    "device",  # a run checkpointed on one machine may go on on another (e.g. GPU -> CPU)
)


# Checks several fields share (their messages are part of the CLI's output).
_COUNT = at_least(1)
_EVERY = at_least(0, " (0 = never)")
_LEARNING_RATE = positive(" (e.g. 2e-5)")


@dataclass(frozen=True, init=False)
class TrainConfig(GroupedConfig):
    """Everything `mftlab train` needs. Each field's help, choices and valid range are in its metadata
    (`doc`); `mftlab train` makes its options from them (`mftlab train --help`).

    Built from flat keywords (a group's options included), read by group (`config.selection`):

    Example:
        >>> config = mftlab.TrainConfig(model="tiny-llama", data="train.jsonl", out="run", max_steps=50)
        >>> config.selection.mask_ratio
        0.1
    """

    model: str
    data: str = field(metadata=doc("Training data: .jsonl/.json/.parquet/.csv, a save_to_disk folder, or a hub id."))
    out: str = field(metadata=doc("Output folder (mask.safetensors, config.json, metrics.jsonl, checkpoints/)."))
    method: str = field(
        default="mask", metadata=doc("mask = MFT; fft = full fine-tuning; lora = LoRA (needs peft).", choices=METHODS)
    )
    # model loading (the one definition of every command's --dtype / --device / --gguf-file / --trust-remote-code)
    dtype: str = field(default="auto", metadata=doc("Weight dtype to load the model in.", choices=DTYPES))
    device: str = field(
        default="auto",
        metadata=doc(
            f"Where to compute: {DEVICES}. auto = cuda:LOCAL_RANK when torch sees a GPU, else cpu; "
            "cuda = cuda:LOCAL_RANK (one GPU per launched process)."
        ),
    )
    gguf_file: str | None = field(
        default=None, metadata=doc("Load this GGUF file (in the model folder) through transformers.")
    )
    trust_remote_code: bool = field(
        default=False, metadata=doc("Allow custom model code from the model folder (off by default).")
    )
    # targeting, mask and lora (the one definition of every command's --targets / --layers / --exclude)
    targets: str = field(
        default="all-linear",
        metadata=doc("Modules to mask: names/suffixes (q_proj,v_proj), re:<regex>, or all-linear (no output head)."),
    )
    layers: str | None = field(
        default=None,
        metadata=doc("Layer ranges by the first numbered path segment, e.g. 4-7 or 0-3,20-23 (the paper's local MFT)."),
    )
    exclude: str | None = field(default=None, metadata=doc("Modules to leave out (same syntax as --targets)."))
    # mask selection (its options: --mask-ratio --selection --granularity --threshold --min-keep-ratio --rank-by)
    selection: SelectionConfig = field(default_factory=SelectionConfig, metadata=group())
    # scores
    score_init: str = field(
        default="random",
        metadata=doc(
            "random N(0,std^2) (step-0 mask is a random prune), magnitude (step-0 mask = magnitude mask), "
            "uniform U(-std,std).",
            choices=SCORE_INITS,
        ),
    )
    score_std: float = field(default=0.02, metadata=doc("Scale of the initial scores.", check=_LEARNING_RATE))
    score_dtype: str = field(
        default="fp32", metadata=doc("Score dtype (bf16 halves their memory).", choices=SCORE_DTYPES)
    )
    score_lr: float = field(
        default=2e-5, metadata=doc("Learning rate of the mask scores (method mask).", check=_LEARNING_RATE)
    )
    # optimisation
    lr: float = field(
        default=2e-5, metadata=doc("Learning rate of the weights (methods fft and lora).", check=_LEARNING_RATE)
    )
    weight_decay: float = field(default=0.0, metadata=doc("AdamW weight decay."))
    warmup_ratio: float = field(
        default=0.03,
        metadata=doc(
            "Fraction of steps of linear warm-up (then linear decay to 0).",
            check=between(0, 1, closed="[)", hint="; use e.g. 0.03"),
        ),
    )
    max_grad_norm: float = field(default=1.0, metadata=doc("Gradient clipping norm (0 = off)."))
    epochs: float = field(
        default=2.0,
        metadata=doc(
            "Passes over the data (ignored with --max-steps).", check=positive(" (the paper trains 2 epochs)")
        ),
    )
    max_steps: int | None = field(
        default=None, metadata=doc("Optimizer steps to run (overrides --epochs).", type=int, check=_COUNT)
    )
    batch_size: int = field(default=8, metadata=doc("Examples per optimizer step, over all processes.", check=_COUNT))
    grad_accum: int = field(default=1, metadata=doc("Micro-batches per optimizer step on each process.", check=_COUNT))
    precision: str = field(
        default="auto", metadata=doc("auto = bf16 autocast where the GPU supports it, else fp32.", choices=PRECISIONS)
    )
    seed: int = field(default=0, metadata=doc("Seed of score init, data order and data subset."))
    # scale (mftlab.training.sharding, mftlab.training.master_weights)
    sharding: str = field(
        default="none",
        metadata=doc(
            "fsdp: shard weights, grads and optimizer state over the processes (FSDP2; mask and fft).",
            choices=SHARDINGS,
        ),
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=doc("Recompute each layer in the backward pass (less memory).")
    )
    pure_bf16: bool = field(
        default=False, metadata=doc("Train 16-bit weights without fp32 master copies (small updates are lost).")
    )
    # data
    max_seq_len: int = field(default=512, metadata=doc("Tokens per example (longer ones are truncated).", check=_COUNT))
    data_fraction: float = field(
        default=1.0,
        metadata=doc(
            "Use this seeded fraction of the data (data-ratio ablation).",
            check=between(0, 1, closed="(]", hint="; use e.g. 0.1 for 10% of the data"),
        ),
    )
    skip_bad: bool = field(
        default=False, metadata=doc("Skip malformed records (reported with file:line) instead of stopping.")
    )
    eval_data: str | None = field(
        default=None,
        metadata=doc("Validation data, evaluated every --eval-every steps; the best result goes to OUT/best."),
    )
    eval_every: int = field(default=0, metadata=doc("Evaluate every N steps (0 = never).", check=_EVERY))
    eval_batch_size: int = field(default=16, metadata=doc("Batch size of evaluation.", check=_COUNT))
    # lora
    lora_r: int = field(default=16, metadata=doc("LoRA rank.", check=_COUNT))
    lora_alpha: int = field(default=32, metadata=doc("LoRA alpha.", check=_COUNT))
    lora_dropout: float = field(default=0.05, metadata=doc("LoRA dropout.", check=between(0, 1, closed="[)")))
    # outputs
    log_every: int = field(default=10, metadata=doc("Write a metrics line every N steps.", check=_COUNT))
    save_every: int = field(default=0, metadata=doc("Write a checkpoint every N steps (0 = never).", check=_EVERY))
    keep_checkpoints: int = field(default=2, metadata=doc("How many recent checkpoints to keep.", check=_COUNT))
    resume: bool = field(default=False, metadata=doc("Continue the run in --out from its last checkpoint."))
    force: bool = field(default=False, metadata=doc("Start over in an --out folder that already holds a run."))
    report_to: str = field(
        default="none",
        metadata=doc(
            "Also send the metrics rows to tensorboard, wandb and/or mlflow (comma-separated; needs the package, "
            "e.g. pip install 'mftlab[tensorboard]'). TensorBoard logs go to OUT/logs."
        ),
    )
    dist_timeout: float = field(
        default=1800.0,
        metadata=doc(
            "Seconds a process waits for the others (multi-process) before the run fails.",
            check=positive(" seconds (default 1800 = 30 minutes)"),
        ),
    )
    mftlab_version: str = field(default=__version__)

    def __post_init__(self):
        check_options(self)  # choices and ranges, from each field's metadata; the group checked itself
        check_device(self.device)
        if self.sharding == "fsdp" and self.method == "lora":
            raise ConfigError(
                "--sharding fsdp does not support --method lora; use --method mask or fft, or --sharding none for LoRA"
            )
        self.target_spec()
        if self.weight_decay < 0 or self.max_grad_norm < 0:
            raise ConfigError("--weight-decay and --max-grad-norm must be >= 0 (0 turns clipping off)")
        parse_report_to(self.report_to)
        if self.eval_every and not self.eval_data:
            raise ConfigError(f"--eval-every {self.eval_every} needs --eval-data FILE to evaluate on")

    # -- derived objects ------------------------------------------------------------------
    def selection_config(self) -> SelectionConfig:
        """The selection group (`config.selection`); kept for scripts written before the group existed."""
        return self.selection

    def target_spec(self) -> TargetSpec:
        return TargetSpec.parse(self.targets, self.layers, self.exclude)

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Every option by its flat name (the `config.json` layout, unchanged by the selection group)."""
        return flat_dict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        known = set(option_names(cls))
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


_FLOAT_FIELDS = {name for name in option_names(TrainConfig) if config_field(TrainConfig, name).type in ("float", float)}


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

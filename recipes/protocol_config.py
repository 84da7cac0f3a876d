"""The protocol's configuration: any backbone, any domains' data, the methods and every knob.

A `ProtocolConfig` is what `mftlab protocol CONFIG.yaml` runs; `mftlab demo` builds one for the
built-in tiny benchmark (recipes.demo) and writes it to `OUT/protocol.yaml`. Every part is a frozen
dataclass that validates itself; `config_from_dict` refuses unknown keys by name and resolves
relative file paths against the config file's folder, `config_to_dict` writes them back relative.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields

from mftlab import __version__
from mftlab.errors import ConfigError
from mftlab.mft.masking import SCORE_INITS
from mftlab.mft.selection import check_ratio
from mftlab.mft.targeting import parse_layers
from mftlab.models.presets import is_preset
from mftlab.options_meta import unknown_choice
from mftlab.recipes.methods import METHODS, REQUIRED
from mftlab.recipes.runtime import Runtime

SPLITS = ("train", "validation", "test")
PATH_NOTE = "relative paths are read from the config file's folder"


def _positive(where: str, value, example) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ConfigError(f"{where}={value!r} must be a positive number, e.g. {example}")


def _count(where: str, value, low: int, high: int, example) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{where}={value!r} is outside {low}..{high}; use e.g. {example}")


def _file(where: str, path) -> None:
    if not isinstance(path, str) or not os.path.exists(path):
        raise ConfigError(f"{where} file '{path}' does not exist; fix the path ({PATH_NOTE})")


@dataclass(frozen=True)
class DomainData:
    """One domain's data files (any format `mftlab train` reads)."""

    train: str
    validation: str
    test: str
    name: str = "domain"  # for messages only
    tasks: tuple[str, ...] = ()  # lm-eval tasks every method of this domain is also scored on
    num_fewshot: int | None = None  # for those tasks (None: each task's own default)

    def __post_init__(self):
        for split in SPLITS:
            _file(f"domains.{self.name}.{split}", getattr(self, split))
        if not all(isinstance(t, str) and t.strip() for t in self.tasks):
            raise ConfigError(
                f"domains.{self.name}.tasks={list(self.tasks)!r} must be lm-eval task names, e.g. [gsm8k]"
            )
        if self.num_fewshot is not None and (not isinstance(self.num_fewshot, int) or self.num_fewshot < 0):
            raise ConfigError(f"domains.{self.name}.num_fewshot={self.num_fewshot!r} must be a whole number, 0 or more")


@dataclass(frozen=True)
class Evaluation:
    """How the domains' lm-eval tasks are run (lm-eval's option names; see `mftlab eval --tasks`)."""

    include_path: str | None = None  # a folder of task YAMLs of your own
    limit: float | None = None  # examples per task (tests only)
    batch_size: int = 16
    apply_chat_template: bool = False
    fewshot_as_multiturn: bool = False
    gen_kwargs: str | None = None
    confirm_run_unsafe_code: bool = False

    def __post_init__(self):
        if self.include_path is not None and not os.path.isdir(self.include_path):
            raise ConfigError(
                f"evaluation.include_path '{self.include_path}' is not a folder; give the folder of task YAMLs "
                f"({PATH_NOTE})"
            )
        _positive("evaluation.batch_size", self.batch_size, 16)
        if self.limit is not None:
            _positive("evaluation.limit", self.limit, 100)


@dataclass(frozen=True)
class Pretraining:
    """Optional: train the backbone first (from a preset or a model) on `data`, by full fine-tuning."""

    data: str
    lr: float = 3e-3
    epochs: float = 3.0
    batch_size: int = 32
    max_seq_len: int = 128
    warmup_ratio: float = 0.05
    log_every: int = 20

    def __post_init__(self):
        _file("pretrain.data", self.data)
        for name, example in (("lr", 3e-3), ("epochs", 3), ("batch_size", 32), ("max_seq_len", 128), ("log_every", 20)):
            _positive(f"pretrain.{name}", getattr(self, name), example)


@dataclass(frozen=True)
class Training:
    """Lengths and rates of the protocol's runs (the paper's recipe, scaled to the model)."""

    fft_epochs: float = 12.0  # long enough that validation loss peaks and then rises (overfitting)
    fft_lr: float = 1e-3
    mft_epochs: float = 3.0  # continued FFT gets the same number of steps
    lora_epochs: float = 6.0
    lora_lr: float = 3e-3
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    batch_size: int = 16
    eval_every: int = 10
    max_seq_len: int = 128
    warmup_ratio: float = 0.05

    def __post_init__(self):
        for name in (
            "fft_epochs",
            "fft_lr",
            "mft_epochs",
            "lora_epochs",
            "lora_lr",
            "lora_r",
            "lora_alpha",
            "batch_size",
            "eval_every",
            "max_seq_len",
        ):
            _positive(f"training.{name}", getattr(self, name), Training.__dataclass_fields__[name].default)


@dataclass(frozen=True)
class Landscape:
    """The loss landscape through FFT best, continued FFT and MFT (first seed)."""

    grid: tuple[int, int] = (9, 9)
    tokens: int = 300  # label tokens per split and point
    margin: float = 0.25

    def __post_init__(self):
        if len(self.grid) != 2 or not all(isinstance(n, int) and n >= 2 for n in self.grid):
            raise ConfigError(f"landscape.grid={list(self.grid)} must be two sizes of at least 2, e.g. [9, 9]")
        _positive("landscape.tokens", self.tokens, 300)
        if not isinstance(self.margin, (int, float)) or self.margin < 0:
            raise ConfigError(f"landscape.margin={self.margin!r} must be 0 or more, e.g. 0.25")


@dataclass(frozen=True)
class ProtocolConfig:
    backbone: str  # a model folder, a hub id or a preset name (with `pretrain`: the model pre-training starts from)
    domains: dict[str, DomainData]
    layers: str  # the local layer group MFT (and the mask baselines) target
    pretrain: Pretraining | None = None
    methods: tuple[str, ...] = METHODS
    mask_ratio: float = 0.1
    seed: int = 0
    seeds: int = 1
    mft_inits: tuple[str, ...] = ("random", "magnitude")  # MFT's grid, chosen on validation
    mft_score_lrs: tuple[float, ...] = (1e-3, 1e-2)
    random_seeds: int = 3  # draws of the random-mask baseline per domain and seed
    training: Training = field(default_factory=Training)
    landscape: Landscape = field(default_factory=Landscape)
    runtime: Runtime = field(default_factory=Runtime)  # where the steps run (recipes.runtime)
    evaluation: Evaluation = field(default_factory=Evaluation)  # how the domains' lm-eval tasks run
    calibration_tokens: int = 4096  # Wanda / SNIP calibration tokens from each domain's training data
    title: str = "Protocol"  # the report's first words
    data_note: str = ""  # shown before the training-record count in the report
    mftlab_version: str = __version__

    def __post_init__(self):
        if not isinstance(self.backbone, str) or not self.backbone:
            raise ConfigError("backbone is missing; name a model folder, a hub id or a preset such as tiny-llama")
        local = self.backbone.startswith((".", "/", "~")) or os.path.isabs(self.backbone)
        if local and not is_preset(self.backbone) and not os.path.exists(self.backbone):
            raise ConfigError(f"backbone '{self.backbone}' does not exist; fix the path ({PATH_NOTE})")
        if not self.domains:
            raise ConfigError("domains is empty; give at least one domain with train, validation and test files")
        parse_layers(self.layers)
        check_ratio(self.mask_ratio)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"methods: '{unknown[0]}' {unknown_choice(METHODS)}")
        missing = [m for m in REQUIRED if m not in self.methods]
        if missing:
            raise ConfigError(f"methods must include '{missing[0]}'; the protocol needs {' and '.join(REQUIRED)}")
        _count("seeds", self.seeds, 1, 20, 3)
        _count("random_seeds", self.random_seeds, 1, 20, 3)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"seed={self.seed!r} must be a whole number, e.g. 0")
        if not self.mft_inits or any(i not in SCORE_INITS for i in self.mft_inits):
            raise ConfigError(f"mft_inits={list(self.mft_inits)} must name one or more of {', '.join(SCORE_INITS)}")
        if not self.mft_score_lrs or not all(isinstance(lr, (int, float)) and lr > 0 for lr in self.mft_score_lrs):
            raise ConfigError(
                f"mft_score_lrs={list(self.mft_score_lrs)} must be one or more positive rates, e.g. [1e-3, 1e-2]"
            )
        _positive("calibration_tokens", self.calibration_tokens, 4096)

    @property
    def mft_variants(self) -> list[tuple[str, float]]:
        """(score init, score learning rate) of every MFT variant, in grid order."""
        return [(init, lr) for init in self.mft_inits for lr in self.mft_score_lrs]


# -- reading and writing ----------------------------------------------------------------------------
def _check_keys(values, cls, where: str) -> dict:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'the protocol config'} must be a mapping of keys to values, not {values!r}")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    known = [f.name for f in fields(cls) if f.name not in ("name", "mftlab_version")]
    for key in values:
        if key not in known and key != "mftlab_version":  # written into every config; the running version wins
            raise ConfigError(
                f"unknown key '{where + '.' if where else ''}{key}' in the protocol config; "
                f"known keys: {', '.join(known)}"
            )
    values.pop("mftlab_version", None)
    return values


def _number(value):
    """YAML 1.1 reads 1e-3 as text; a number written that way is still meant as a number."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _path(value, base_dir: str):
    if isinstance(value, str) and value and not os.path.isabs(value):
        return os.path.normpath(os.path.join(base_dir, value)) if base_dir else value
    return value


def config_from_dict(values: dict, base_dir: str = "") -> ProtocolConfig:
    """A validated config from plain values (a parsed YAML/JSON file); paths are relative to `base_dir`."""
    values = _check_keys(values, ProtocolConfig, "")
    for required in ("backbone", "domains", "layers"):
        if required not in values:
            raise ConfigError(
                f"key '{required}' is missing from the protocol config; see README 'mftlab protocol' for an example"
            )
    domains = values["domains"]
    if not isinstance(domains, dict):
        raise ConfigError("domains must map each domain's name to its train, validation and test files")
    parsed = {}
    for name, files in domains.items():
        files = _check_keys(files, DomainData, f"domains.{name}")
        for split in SPLITS:
            if split not in files:
                raise ConfigError(f"domains.{name}.{split} is missing; give the {split} data file")
        extra = {}
        if "tasks" in files:
            tasks = files["tasks"]
            extra["tasks"] = tuple(tasks) if isinstance(tasks, (list, tuple)) else (tasks,)
        if "num_fewshot" in files:
            extra["num_fewshot"] = files["num_fewshot"]
        parsed[str(name)] = DomainData(**{s: _path(files[s], base_dir) for s in SPLITS}, name=str(name), **extra)
    values["domains"] = parsed
    backbone = values["backbone"]
    if isinstance(backbone, str) and backbone.startswith("."):
        values["backbone"] = _path(backbone, base_dir)
    if values.get("pretrain") is not None:
        pretrain = _check_keys(values["pretrain"], Pretraining, "pretrain")
        pretrain = {k: (_path(v, base_dir) if k == "data" else _number(v)) for k, v in pretrain.items()}
        values["pretrain"] = Pretraining(**pretrain)
    for key, cls in (("training", Training), ("landscape", Landscape)):
        if key in values:
            part = {k: _number(v) for k, v in _check_keys(values[key], cls, key).items()}
            if isinstance(part.get("grid"), list):
                part["grid"] = tuple(part["grid"])
            values[key] = cls(**part)
    if "evaluation" in values:
        part = _check_keys(values["evaluation"] or {}, Evaluation, "evaluation")
        part = {k: (_path(v, base_dir) if k == "include_path" else _number(v)) for k, v in part.items()}
        values["evaluation"] = Evaluation(**part)
    if "runtime" in values:
        part = _check_keys(values["runtime"] or {}, Runtime, "runtime")
        if "launcher_args" in part:
            args = part["launcher_args"]
            part["launcher_args"] = tuple(args) if isinstance(args, (list, tuple)) else (args,)
        if "gpu_memory_gib" in part:
            part["gpu_memory_gib"] = _number(part["gpu_memory_gib"])
        values["runtime"] = Runtime(**part)
    for key in ("methods", "mft_inits"):
        if key in values:
            values[key] = tuple(values[key]) if isinstance(values[key], (list, tuple)) else (values[key],)
    if "mft_score_lrs" in values:
        lrs = values["mft_score_lrs"]
        values["mft_score_lrs"] = tuple(_number(v) for v in (lrs if isinstance(lrs, (list, tuple)) else [lrs]))
    if "mask_ratio" in values:
        values["mask_ratio"] = _number(values["mask_ratio"])
    if "layers" in values and not isinstance(values["layers"], str):
        values["layers"] = str(values["layers"])
    return ProtocolConfig(**values)


def load_protocol_config(path: str) -> ProtocolConfig:
    """A validated config from a YAML (.yaml / .yml) or JSON file; relative paths are read from its folder."""
    from mftlab.training.config import load_config_file

    return config_from_dict(load_config_file(path), os.path.dirname(os.path.abspath(path)))


def _domain_values(domain: DomainData, rel) -> dict:
    values = {s: rel(getattr(domain, s)) for s in SPLITS}
    if domain.tasks:
        values["tasks"] = list(domain.tasks)
    if domain.num_fewshot is not None:
        values["num_fewshot"] = domain.num_fewshot
    return values


def config_to_dict(config: ProtocolConfig, relative_to: str | None = None) -> dict:
    """Plain values (YAML/JSON-ready); with `relative_to`, file paths are written relative to that folder."""

    def rel(path: str) -> str:
        return os.path.relpath(path, relative_to) if relative_to else path

    values = asdict(config)
    values["domains"] = {name: _domain_values(d, rel) for name, d in config.domains.items()}
    if config.evaluation.include_path is not None:
        values["evaluation"]["include_path"] = rel(config.evaluation.include_path)
    if config.pretrain is not None:
        values["pretrain"]["data"] = rel(config.pretrain.data)
    for key in ("methods", "mft_inits", "mft_score_lrs"):
        values[key] = list(values[key])
    values["landscape"]["grid"] = list(config.landscape.grid)
    values["runtime"]["launcher_args"] = list(config.runtime.launcher_args)
    return values

"""`mftlab baseline` end to end: its options checked, one mask per seed written, the draws' overlap and loss.

    config = BaselineConfig(kind="random", mask_ratio=0.1, n_seeds=3, eval_data="val.jsonl")
    result = make_baselines(loaded, config, spec, out_path="random.safetensors", base_name="tiny-llama")
    result.to_dict()   # what `mftlab baseline --json` prints, less the peak memory

The masks themselves come from mftlab.mft.baselines; this module adds what the command does around
them, reporting each piece (the calibration, every mask written, the overlap, the losses) as it is done
through `report`, so the CLI prints a mask's line before the next one is made.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, fields

from mftlab.errors import ConfigError
from mftlab.mft.baselines import (
    DATA_KINDS,
    baseline_mask,
    default_granularity,
    draw_paths,
    evaluate_draws,
    shared_masked_fraction,
)
from mftlab.mft.calibration import Calibration, CalibrationConfig
from mftlab.mft.selection import check_ratio
from mftlab.mft.targeting import TargetSpec


@dataclass(frozen=True, kw_only=True)
class BaselineConfig:
    """What `mftlab baseline` makes; checked in the order the command has always reported mistakes.

    `n_seeds` None means 3 draws for `random`, 1 otherwise (the other kinds do not depend on a seed).
    `data`, `max_tokens`, `batch_size` and `max_seq_len` are the calibration of wanda and snip
    (`calibration`, None for the other kinds); `max_seq_len` also bounds the `eval_data` examples.
    """

    kind: str
    mask_ratio: float = 0.1
    granularity: str | None = None
    n_seeds: int | None = None
    seed: int = 0
    data: str | None = None
    max_tokens: int = 16384
    batch_size: int = 8
    max_seq_len: int = 512
    eval_data: str | None = None
    codec: str = "packbits"
    calibration: CalibrationConfig | None = field(init=False, default=None, repr=False)

    def __post_init__(self):
        check_ratio(self.mask_ratio)
        if self.kind != "random" and self.n_seeds not in (None, 1):
            raise ConfigError(f"--seeds {self.n_seeds}: {self.kind} masks do not depend on a seed; leave --seeds out")
        n_seeds = self.n_seeds if self.n_seeds is not None else (3 if self.kind == "random" else 1)
        if not 1 <= n_seeds <= 100:
            raise ConfigError(f"--seeds {n_seeds} is outside 1..100; use e.g. 3 for a mean and a spread")
        object.__setattr__(self, "n_seeds", n_seeds)
        if self.kind in DATA_KINDS and not self.data:
            raise ConfigError(
                f"--kind {self.kind} needs calibration data: pass --data FILE (e.g. the training data) "
                "and optionally --max-tokens N"
            )
        if self.kind in DATA_KINDS:
            calibration = CalibrationConfig(self.data, self.max_tokens, self.batch_size, self.max_seq_len)
            object.__setattr__(self, "calibration", calibration)

    @classmethod
    def from_options(cls, options: dict) -> "BaselineConfig":
        """The config from a command's options: its own fields are taken, the others (model loading) ignored."""
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.init and f.name in options})

    @property
    def seeds(self) -> list[int]:
        return list(range(self.seed, self.seed + self.n_seeds))


# -- what is reported and returned ------------------------------------------------------------
@dataclass(frozen=True)
class WrittenMask:
    """One mask file written: its draw's seed and what it masks."""

    path: str
    seed: int
    tensors: int
    weights: int
    masked: int
    mask_ratio: float
    bits_per_weight: float  # of the file as written (codec included)


@dataclass(frozen=True)
class DrawOverlap:
    """How much several draws agree: the mean over pairs of the fraction of masked weights they share."""

    seeds: list[int]
    shared_masked_fraction: float


@dataclass(frozen=True)
class DrawLosses:
    """Validation loss of every draw on `data`, with their mean and sample standard deviation (0 for one)."""

    data: str
    losses: list[float]
    mean: float
    std: float


@dataclass
class BaselineResult:
    model: str
    kind: str
    granularity: str
    device: str
    masks: list[WrittenMask]
    calibration: Calibration | None = None
    overlap: DrawOverlap | None = None  # with several draws
    eval: DrawLosses | None = None  # with eval data

    def to_dict(self) -> dict:
        summary = {
            "model": self.model,
            "kind": self.kind,
            "granularity": self.granularity,
            "device": self.device,
            "masks": [asdict(m) for m in self.masks],
            "calibration": self.calibration.to_dict() if self.calibration is not None else None,
        }
        if self.overlap is not None:
            summary["shared_masked_fraction"] = self.overlap.shared_masked_fraction
        if self.eval is not None:
            summary["eval"] = asdict(self.eval)
        return summary


# -- the flow ---------------------------------------------------------------------------------
def _write_draws(loaded, config: BaselineConfig, spec: TargetSpec, calibration, *, out_path, base_name, progress):
    """Yields (mask, its WrittenMask) for every seed in turn, each saved to its file as soon as it is made."""
    from mftlab.mask.maskfile import file_bits_per_param, save_mask

    for seed, path in zip(config.seeds, draw_paths(out_path, config.seeds)):
        mask, found = baseline_mask(
            loaded.model,
            config.kind,
            config.mask_ratio,
            spec,
            granularity=config.granularity,
            seed=seed,
            base_name=base_name,
            calibration=calibration,
            progress=progress if calibration is not None else None,
        )
        save_mask(mask, path, codec=config.codec)
        masked = mask.total - mask.total_kept
        bits = file_bits_per_param(path, mask)
        yield mask, WrittenMask(path, seed, len(found), mask.total, masked, mask.mask_ratio, bits)


def _draw_losses(loaded, masks: list, config: BaselineConfig) -> DrawLosses:
    from mftlab.training.data import load_examples

    examples, _ = load_examples(config.eval_data, loaded.tokenizer, config.max_seq_len)
    losses = evaluate_draws(loaded.model, loaded.tokenizer, masks, examples)
    spread = statistics.stdev(losses) if len(losses) > 1 else 0.0
    return DrawLosses(config.eval_data, losses, statistics.fmean(losses), spread)


def make_baselines(
    loaded,
    config: BaselineConfig,
    spec: TargetSpec,
    *,
    out_path: str,
    base_name: str,
    device,
    progress=None,
    report=None,
) -> BaselineResult:
    """Make and save `config.n_seeds` masks of `config.kind` over `spec`'s weights of `loaded` (a LoadedModel on
    `device`): the first at `out_path`, the others beside it (`draw_paths`).

    `progress(tokens_seen, tokens)` follows wanda's and snip's calibration passes; `report(piece)` gets the
    Calibration, each WrittenMask, the DrawOverlap and the DrawLosses as soon as each is known.
    """
    from mftlab.mft.calibration import load_calibration
    from mftlab.mft.targeting import resolve_targets

    report = report or (lambda piece: None)
    resolve_targets(loaded.model, spec)  # a targeting mistake is reported before calibration runs
    calibration = load_calibration(config.calibration, loaded.tokenizer, device) if config.calibration else None
    if calibration is not None:
        report(calibration)
    granularity = config.granularity or default_granularity(config.kind)
    result = BaselineResult(base_name, config.kind, granularity, str(device), [], calibration)
    masks = []
    for mask, written in _write_draws(
        loaded, config, spec, calibration, out_path=out_path, base_name=base_name, progress=progress
    ):
        masks.append(mask)
        result.masks.append(written)
        report(written)
    if config.n_seeds > 1:
        shared = [shared_masked_fraction(a, b) for i, a in enumerate(masks) for b in masks[i + 1 :]]
        result.overlap = DrawOverlap(config.seeds, statistics.fmean(shared))
        report(result.overlap)
    if config.eval_data:
        result.eval = _draw_losses(loaded, masks, config)
        report(result.eval)
    return result

"""`baseline_mask`: the paper's random and magnitude (L1) masks, and the pruning criteria Wanda and SNIP,
from Python, without training."""

from __future__ import annotations

import torch

from mftlab.errors import ConfigError
from mftlab.mask.maskfile import Mask
from mftlab.mft.baselines import DATA_KINDS
from mftlab.mft.baselines import baseline_mask as _baseline_mask
from mftlab.mft.targeting import TargetSpec


def baseline_mask(
    model: torch.nn.Module,
    kind: str = "magnitude",
    *,
    mask_ratio: float = 0.1,
    targets: str = "all-linear",
    layers: str | None = None,
    exclude: str | None = None,
    granularity: str | None = None,
    seed: int = 0,
    base_name: str | None = None,
    data: str | None = None,
    tokenizer=None,
    max_tokens: int = 16384,
) -> Mask:
    """A `kind` mask (random | magnitude | wanda | snip) over the targeted weights of `model`, as
    `mftlab baseline` makes it.

    Exactly K = round-half-up(mask_ratio * n) weights are masked per group (tensor | row | global;
    default: row for wanda, tensor otherwise); ties go to the lower index, so the result is
    deterministic. wanda and snip read up to `max_tokens` calibration tokens of `data` with
    `tokenizer`. The model is not changed.

    Example:
        >>> import mftlab
        >>> model = mftlab.load_model("micro-llama").model
        >>> mask = mftlab.baseline_mask(model, kind="magnitude", mask_ratio=0.1, layers="0")
        >>> round(mask.mask_ratio, 2)
        0.1
    """
    if base_name is None:
        base_name = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    spec = TargetSpec.parse(targets, layers, exclude)
    calibration = None
    if kind in DATA_KINDS:
        if data is None or tokenizer is None:
            raise ConfigError(
                f"baseline_mask(kind={kind!r}) needs calibration data: pass data=FILE (e.g. the "
                "training data) and the model's tokenizer="
            )
        from mftlab.mft.calibration import CalibrationConfig, load_calibration

        calibration = load_calibration(CalibrationConfig(data, max_tokens), tokenizer)
    return _baseline_mask(
        model, kind, mask_ratio, spec, granularity=granularity, seed=seed, base_name=base_name, calibration=calibration
    )[0]

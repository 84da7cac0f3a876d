"""Scores behind masks, for rank correlations: MFT's learned scores from a training run, and a
pruning criterion's scores recomputed from the model (plus the calibration data the mask records).

- MFT: the latest checkpoint `OUT/checkpoints/step-*/trainable.safetensors` holds one tensor
  `<module>.mask_scores` per masked weight `<module>.weight` (mftlab.training.checkpoint). MFT masks the
  lowest scores (or lowest |score| with rank_by=abs), so the ranking value is the score itself.
- Criteria (magnitude, wanda, snip masks from `mftlab baseline`): recomputed, not stored, from
  the base model and, for wanda / snip, the calibration file; the mask's metadata gives the token
  budget and the token fingerprint, which must match, so the scores are those the mask was made from.

Spearman's rho is computed per tensor (average ranks for ties); a group's value is the mean over
its tensors weighted by their number of weights.
"""

from __future__ import annotations

import os

import numpy as np

from mftlab.errors import MftlabError
from mftlab.mask.maskfile import Mask
from mftlab.training.checkpoint import list_checkpoints

SCORES_SUFFIX = ".mask_scores"


def run_scores(run_dir: str, rank_by: str = "raw") -> tuple[dict, int]:
    """(param_name -> fp32 ranking value, checkpoint step) from a run's latest checkpoint."""
    from safetensors.torch import load_file

    if not os.path.isdir(run_dir):
        raise MftlabError(f"--scores '{run_dir}' is not a folder; pass the --out folder of an `mftlab train` run")
    found = list_checkpoints(run_dir)
    if not found:
        raise MftlabError(
            f"--scores: run '{run_dir}' has no checkpoint to read scores from; train it with "
            "--save-every N (e.g. --save-every 50) so that checkpoints are written"
        )
    step, path = found[-1]
    try:
        trainable = load_file(os.path.join(path, "trainable.safetensors"))
    except (OSError, ValueError, RuntimeError) as exc:
        raise MftlabError(
            f"checkpoint '{path}' cannot be read ({str(exc)[:120]}); pass a run with a complete checkpoint"
        ) from None
    scores = {}
    for key, tensor in trainable.items():
        if key.endswith(SCORES_SUFFIX):
            value = tensor.float()
            scores[key[: -len(SCORES_SUFFIX)] + ".weight"] = value.abs() if rank_by == "abs" else value
    if not scores:
        raise MftlabError(f"checkpoint '{path}' holds no mask scores (was the run --method mask?); pass an MFT run")
    return scores, step


def _calibration_for(mask: Mask, label: str, tokenizer, data: str):
    from mftlab.mft.calibration import CalibrationConfig, load_calibration

    recorded = mask.method.get("calibration") or {}
    config = CalibrationConfig(
        data,
        int(recorded.get("max_tokens", 16384)),
        int(recorded.get("batch_size", 8)),
        int(recorded.get("max_seq_len", 512)),
    )
    calibration = load_calibration(config, tokenizer)
    if recorded.get("fingerprint") and calibration.fingerprint != recorded["fingerprint"]:
        raise MftlabError(
            f"--data '{data}' is not the calibration data of mask '{label}' (its token fingerprint "
            "differs); pass the file that `mftlab baseline --data` used, with the same model"
        )
    return calibration


def mask_criterion_scores(
    mask: Mask, label: str, names: list[str], loaded, *, data: str | None, force: bool = False
) -> tuple[dict | None, str | None]:
    """(param_name -> scores, None) for a magnitude / wanda / snip mask, or (None, why not)."""
    from mftlab.mask.fingerprint import tensor_fingerprint
    from mftlab.mft.pruning_scores import CRITERIA, NEEDS_DATA, criterion_scores
    from mftlab.mft.targeting import TargetSpec, resolve_targets

    kind = mask.method.get("name")
    if kind not in CRITERIA:
        return None, f"'{label}' is a {kind or 'unknown'} mask, not a pruning criterion: no scores to correlate"
    if kind in NEEDS_DATA and not data:
        return None, f"'{label}' is a {kind} mask: pass --data (its calibration file) for its rank correlation"
    every = {t.param_name: t for t in resolve_targets(loaded.model, TargetSpec(("re:.*",)))}  # Linear / Conv1D
    targets = []
    for name in names:
        target = every.get(name)
        if target is None or target.shape != tuple(mask.shapes[name]):
            raise MftlabError(
                f"tensor '{name}' of mask '{label}' is not a Linear / Conv1D weight of that shape in "
                "--model; pass the model the masks were made on"
            )
        expected = mask.fingerprints.get(name)
        weight = loaded.model.get_submodule(target.module_name).weight
        if expected and not force and tensor_fingerprint(weight) != expected:
            raise MftlabError(
                f"--model's '{name}' differs from the base of mask '{label}' (fingerprint); pass the "
                "model the mask was made on, or --force"
            )
        targets.append(target)
    calibration = _calibration_for(mask, label, loaded.tokenizer, data) if kind in NEEDS_DATA else None
    return criterion_scores(kind, loaded.model, targets, calibration), None


def _ranks(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def spearman(a, b) -> float | None:
    """Spearman's rho of two same-shape tensors (None when either is constant)."""
    x = np.asarray(a.detach().cpu().double().reshape(-1))
    y = np.asarray(b.detach().cpu().double().reshape(-1))
    if x.size < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return None
    rx, ry = _ranks(x), _ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    return float((rx @ ry) / np.sqrt((rx @ rx) * (ry @ ry)))

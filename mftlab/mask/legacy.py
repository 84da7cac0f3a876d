"""Import of legacy masks: a `.pt` file of dense 0/1 tensors keyed by module or parameter name
(the format the paper's public code exports), read safely with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import pickle

import torch

from mftlab.errors import MaskFormatError, MaskMismatchError
from mftlab.mask.maskfile import Mask

_PREFIXES = ("module.", "base_model.model.")


def read_legacy(path: str) -> dict[str, torch.Tensor]:
    """name -> dense tensor, from a .pt file (never unpickles arbitrary objects)."""
    if not os.path.isfile(path):
        raise MaskFormatError(f"legacy mask '{path}' does not exist; check the path")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,
        EOFError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        ImportError,
        OSError,
    ) as exc:  # a corrupt pickle stream fails in any of these
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise MaskFormatError(
            f"'{path}' is not a loadable tensor file ({first}); only plain tensor dicts are read"
        ) from None
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise MaskFormatError(f"'{path}' must hold a dict of name -> 0/1 tensor; found {type(data).__name__}")
    return data


def _param_name(key: str, params: dict[str, torch.Tensor] | None) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix) and (params is None or key not in params):
            key = key[len(prefix) :]
    if params is None:
        return key if key.endswith((".weight", ".bias")) else f"{key}.weight"
    for candidate in (key, f"{key}.weight"):
        if candidate in params:
            return candidate
    raise MaskMismatchError(
        f"legacy mask entry '{key}' is neither a module nor a parameter of the model; use the model it was made for"
    )


def convert_legacy(
    path: str,
    weights: dict[str, torch.Tensor] | None = None,
    base_name: str = "",
    force: bool = False,
) -> Mask:
    """Convert a legacy dense mask to a v1 Mask (values must be exactly 0 or 1; 1 = kept).

    With `weights` (the base model's parameters) names are resolved against the model and
    fingerprints are recorded; without, names get '.weight' appended when they name modules.
    """
    dense = read_legacy(path)
    keep = {}
    for key, tensor in dense.items():
        values = tensor.float()
        if not bool(((values == 0) | (values == 1)).all()):
            raise MaskFormatError(f"legacy mask entry '{key}' holds values other than 0 and 1; export a binary mask")
        name = _param_name(key, weights)
        if weights is not None and tuple(weights[name].shape) != tuple(values.shape):
            if values.dim() == 2 and tuple(weights[name].shape) == tuple(values.T.shape):
                raise MaskMismatchError(
                    f"legacy mask entry '{key}' is transposed ({list(values.shape)}); "
                    f"the parameter is {list(weights[name].shape)}"
                )
            raise MaskMismatchError(
                f"legacy mask entry '{key}' has shape {list(values.shape)} but the parameter "
                f"has {list(weights[name].shape)}"
            )
        keep[name] = values.bool()
    method = {"name": "imported", "source": os.path.basename(path)}
    mask = Mask.from_keep(keep, {n: weights[n] for n in keep} if weights is not None else None, base_name, method)
    mask.method["mask_ratio"] = round(mask.mask_ratio, 6)
    return mask

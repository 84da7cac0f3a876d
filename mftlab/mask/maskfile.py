"""The mask file, format version 1 (CONTRIBUTING.md, section 3): in-memory `Mask`, save and load.

A mask file is a plain safetensors file: one uint8 tensor per masked parameter, keyed by the
parameter's exact state-dict name, bits packed little-endian along the last axis (see
`mftlab.mask.packing`), with string metadata describing format, tensors, base model and method.
Readers validate everything; writers replace the target atomically.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mftlab import __version__
from mftlab.errors import ConfigError, MaskFormatError, MaskMismatchError
from mftlab.files.atomic import atomic_path
from mftlab.mask.codecs import CODECS, decode, encode
from mftlab.mask.fingerprint import combined_fingerprint, tensor_fingerprint
from mftlab.mask.packing import pack_bits, packed_shape, padding_is_zero, popcount, unpack_bits

if TYPE_CHECKING:  # torch is imported lazily: loading and comparing masks never needs it
    import torch

FORMAT = "mftlab.mask"
FORMAT_VERSION = "1"
BIT_ORDER = "little"


@dataclass
class Mask:
    """A set of bit-packed keep-masks, one per parameter (bit 1 = kept, 0 = masked).

    Example:
        >>> mask = mftlab.Mask.load("run/mask.safetensors")  # doctest: +SKIP
        >>> keep = mask["model.layers.0.mlp.down_proj.weight"]  # bool tensor, True = kept  # doctest: +SKIP
        >>> with mask.apply_to(model): ...  # masked weights are zero inside the block  # doctest: +SKIP
    """

    packed: dict[str, np.ndarray]  # name -> uint8, packed_shape(shape)
    shapes: dict[str, tuple[int, ...]]
    fingerprints: dict[str, str | None]
    base_model: dict = field(default_factory=dict)  # {"name_or_path", "fingerprint"}
    method: dict = field(default_factory=dict)  # {"name": "mft"|"random"|..., "mask_ratio", ...}
    codec: str = "packbits"  # codec of the file it was loaded from (informational)
    mftlab_version: str = __version__

    @classmethod
    def from_keep(
        cls,
        keep: "dict[str, torch.Tensor]",
        weights: "dict[str, torch.Tensor] | None" = None,
        base_name: str = "",
        method: dict | None = None,
    ) -> "Mask":
        """Build a mask from boolean keep tensors; `weights` (same names) gives fingerprints."""
        packed, shapes, prints = {}, {}, {}
        for name, k in keep.items():
            packed[name] = pack_bits(k)
            shapes[name] = tuple(k.shape)
            prints[name] = tensor_fingerprint(weights[name]) if weights is not None else None
        base = {"name_or_path": str(base_name)}
        if all(p is not None for p in prints.values()):
            base["fingerprint"] = combined_fingerprint(prints)
        return cls(packed, shapes, prints, base, dict(method or {}))

    # -- queries -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.packed)

    def keep(self, name: str, device="cpu") -> "torch.Tensor":
        """The boolean keep-mask of one parameter, in the parameter's own layout."""
        bits = unpack_bits(self.packed[name], self.shapes[name])
        import torch

        return torch.from_numpy(bits).to(device)

    def kept(self, name: str) -> int:
        return popcount(self.packed[name])

    def numel(self, name: str) -> int:
        return math.prod(self.shapes[name])

    @property
    def total(self) -> int:
        return sum(self.numel(n) for n in self.packed)

    @property
    def total_kept(self) -> int:
        return sum(self.kept(n) for n in self.packed)

    @property
    def mask_ratio(self) -> float:
        """Fraction of targeted weights that are masked (bit 0)."""
        return 1.0 - self.total_kept / max(self.total, 1)

    # -- the public API's conveniences (mftlab.Mask) ----------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike) -> "Mask":
        """Read and validate a v1 mask file.

        Example:
            >>> mask = mftlab.Mask.load("run/mask.safetensors")  # doctest: +SKIP
            >>> mask["model.layers.0.self_attn.q_proj.weight"].float().mean()  # fraction kept  # doctest: +SKIP
        """
        return load_mask(path)

    def save(self, path: str | os.PathLike, codec: str = "packbits") -> str:
        """Write the mask to `path` (format v1, atomically); returns the path.

        Example:
            >>> mftlab.baseline_mask(model, kind="random").save("random.safetensors")  # doctest: +SKIP
        """
        save_mask(self, path, codec=codec)
        return os.fspath(path)

    def apply_to(self, model, force: bool = False):
        """Zero the masked weights of `model` in place, reversibly: returns an `AppliedMask`
        whose `restore()` (or the end of a `with` block) puts the original values back.

        Example:
            >>> with mask.apply_to(model):  # doctest: +SKIP
            ...     loss = model(**batch).loss
        """
        from mftlab.api.applied import AppliedMask

        return AppliedMask(model, self, force)

    def __getitem__(self, name: str) -> "torch.Tensor":
        """The boolean keep-mask (True = kept) of parameter `name`, in its own layout."""
        if name not in self.packed:
            raise KeyError(f"'{name}' is not in this mask; it holds {len(self.packed)} tensors, e.g. {self.names[:2]}")
        return self.keep(name)

    def __contains__(self, name: object) -> bool:
        return name in self.packed

    def __len__(self) -> int:
        return len(self.packed)

    def __iter__(self):
        return iter(self.packed)

    # -- binding to a model ----------------------------------------------------------------
    def check_fits(self, weights: "dict[str, torch.Tensor]", force: bool = False) -> list[str]:
        """Check that every masked tensor exists in `weights` with the same shape and fingerprint.

        Shape or name mismatches always raise; fingerprint mismatches raise unless `force`
        (then their names are returned so the caller can say so).
        """
        missing = [n for n in self.packed if n not in weights]
        if missing:
            raise MaskMismatchError(
                f"mask tensor '{missing[0]}' is not a parameter of this model "
                f"({len(missing)} of {len(self.packed)} missing); use the model the mask was made for"
            )
        mismatched = []
        for name in self.packed:
            shape = tuple(weights[name].shape)
            if shape != self.shapes[name]:
                raise MaskMismatchError(
                    f"mask tensor '{name}' has shape {list(self.shapes[name])} but the model's "
                    f"parameter has shape {list(shape)}; use the model the mask was made for"
                )
            expected = self.fingerprints.get(name)
            if expected and tensor_fingerprint(weights[name]) != expected:
                mismatched.append(name)
        if mismatched and not force:
            raise MaskMismatchError(
                f"weights of '{mismatched[0]}' differ from the base the mask was learned on "
                f"({len(mismatched)} of {len(self.packed)} tensors differ); load the base model "
                f"'{self.base_model.get('name_or_path', '?')}' or pass --force to apply anyway"
            )
        return mismatched


# -- save -----------------------------------------------------------------------------------
def _metadata(mask: Mask, codec: str) -> dict[str, str]:
    tensors = {
        n: {"shape": list(mask.shapes[n]), "kept": mask.kept(n), "fingerprint": mask.fingerprints.get(n)}
        for n in mask.packed
    }
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bit_order": BIT_ORDER,
        "mftlab_version": __version__,
        "codec": codec,
        "tensors": json.dumps(tensors),
        "base_model": json.dumps(mask.base_model),
        "method": json.dumps(mask.method),
    }


def check_mask_out(out_path: str | None) -> None:
    """A command's --out for a mask names a .safetensors file (no path: nothing to check, e.g. a dry run)."""
    if out_path and not out_path.endswith(".safetensors"):
        raise ConfigError(f"--out '{out_path}' should end in .safetensors; masks are safetensors files")


def save_mask(mask: Mask, path: str | os.PathLike, codec: str = "packbits") -> None:
    """Write `mask` to `path` (v1). The file appears complete or not at all."""
    from safetensors.numpy import save_file

    if codec not in CODECS:
        raise MaskFormatError(f"unknown codec '{codec}'; choose one of {', '.join(CODECS)}")
    for name, packed in mask.packed.items():
        if not padding_is_zero(packed, mask.shapes[name][-1] if mask.shapes[name] else 1):
            raise MaskFormatError(f"mask tensor '{name}' has padding bits set; pack it with mftlab.mask.packing")
    tensors = {name: encode(packed, codec) for name, packed in mask.packed.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=_metadata(mask, codec))


# -- load -----------------------------------------------------------------------------------
def _json_field(meta: dict, key: str, path) -> object:
    if key not in meta:
        raise MaskFormatError(f"{path}: metadata field '{key}' is missing; the file is not a valid mftlab mask")
    try:
        return json.loads(meta[key])
    except (TypeError, ValueError):
        raise MaskFormatError(f"{path}: metadata field '{key}' is not valid JSON; the file is corrupted") from None


def _read_header(path) -> tuple[dict, object]:
    from safetensors import safe_open

    if not os.path.exists(path):
        raise MaskFormatError(f"mask file '{path}' does not exist; check the path")
    if os.path.isdir(path):
        raise MaskFormatError(f"'{path}' is a folder, not a mask file; pass the .safetensors file inside it")
    try:
        handle = safe_open(str(path), framework="numpy")
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise MaskFormatError(
            f"'{path}' is not a readable safetensors file ({str(exc).splitlines()[0][:120]}); "
            "it may be truncated or not a mask"
        ) from None
    return handle.metadata() or {}, handle


def _check_meta(meta: dict, path) -> dict:
    fmt = meta.get("format")
    if fmt != FORMAT:
        raise MaskFormatError(f"'{path}' is not an mftlab mask (format={fmt!r}); masks have format '{FORMAT}'")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise MaskFormatError(
            f"'{path}' has mask format version {version!r}; this mftlab ({__version__}) reads version "
            f"{FORMAT_VERSION}: upgrade mftlab"
        )
    if meta.get("bit_order") != BIT_ORDER:
        raise MaskFormatError(f"'{path}' has bit_order {meta.get('bit_order')!r}; version 1 requires 'little'")
    codec = meta.get("codec", "packbits")
    if codec not in CODECS:
        raise MaskFormatError(f"'{path}' uses unknown codec {codec!r}; known codecs: {', '.join(CODECS)}")
    tensors = _json_field(meta, "tensors", path)
    if not isinstance(tensors, dict) or not tensors:
        raise MaskFormatError(f"'{path}': metadata 'tensors' must be a non-empty object")
    return tensors


def _load_tensor(handle, name: str, info: object, codec: str, path) -> tuple[np.ndarray, tuple[int, ...], str | None]:
    if not isinstance(info, dict) or not isinstance(info.get("shape"), list):
        raise MaskFormatError(f"'{path}': tensor '{name}' has no valid 'shape' in the metadata")
    shape = info["shape"]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise MaskFormatError(f"'{path}': tensor '{name}' has invalid shape {shape}")
    shape = tuple(shape)
    try:
        raw = handle.get_tensor(name)
    except Exception as exc:
        raise MaskFormatError(
            f"'{path}': tensor '{name}' cannot be read ({str(exc)[:80]}); the file is truncated or corrupted"
        ) from None
    if raw.dtype != np.uint8:
        raise MaskFormatError(f"'{path}': tensor '{name}' has dtype {raw.dtype}; masks are uint8")
    packed = decode(raw, codec, packed_shape(shape), name, path)
    if packed.shape != packed_shape(shape):
        raise MaskFormatError(
            f"'{path}': tensor '{name}' is stored as {list(packed.shape)} but its shape {list(shape)} "
            f"packs to {list(packed_shape(shape))}"
        )
    if not padding_is_zero(packed, shape[-1] if shape else 1):
        raise MaskFormatError(f"'{path}': tensor '{name}' has padding bits set; the file is corrupted")
    kept = info.get("kept")
    if not isinstance(kept, int) or isinstance(kept, bool) or kept != popcount(packed):
        raise MaskFormatError(
            f"'{path}': tensor '{name}' records kept={kept} but holds {popcount(packed)} kept bits; "
            "the file is corrupted"
        )
    fingerprint = info.get("fingerprint")
    if fingerprint is not None and not isinstance(fingerprint, str):
        raise MaskFormatError(f"'{path}': tensor '{name}' has a non-string fingerprint")
    return packed, shape, fingerprint


def load_mask(path: str | os.PathLike) -> Mask:
    """Read and fully validate a v1 mask file. Raises MaskFormatError naming what is wrong."""
    path = os.fspath(path)
    meta, handle = _read_header(path)
    tensors = _check_meta(meta, path)
    codec = meta.get("codec", "packbits")
    stored = set(handle.keys())
    if stored != set(tensors):
        extra = sorted(stored ^ set(tensors))[0]
        raise MaskFormatError(
            f"'{path}': tensor '{extra}' is in the data or the metadata but not both; the file is corrupted"
        )
    packed, shapes, prints = {}, {}, {}
    for name, info in tensors.items():
        packed[name], shapes[name], prints[name] = _load_tensor(handle, name, info, codec, path)
    base = _json_field(meta, "base_model", path)
    method = _json_field(meta, "method", path)
    if not isinstance(base, dict) or not isinstance(method, dict):
        raise MaskFormatError(f"'{path}': metadata 'base_model' and 'method' must be JSON objects")
    return Mask(packed, shapes, prints, base, method, codec, meta.get("mftlab_version", "?"))


def file_bits_per_param(path: str | os.PathLike, mask: Mask) -> float:
    """Bits on disk (file size, metadata included) per masked-over parameter."""
    return os.path.getsize(path) * 8 / max(mask.total, 1)

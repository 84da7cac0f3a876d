"""A summary of a mask file: what `mftlab inspect` shows."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from mftlab.mask.maskfile import Mask, file_bits_per_param


@dataclass
class TensorSummary:
    name: str
    shape: list[int]
    numel: int
    masked: int
    masked_fraction: float


@dataclass
class MaskSummary:
    path: str
    format: str
    format_version: str
    codec: str
    mftlab_version: str
    base_model: dict
    method: dict
    tensors: list[TensorSummary]
    total: int
    masked: int
    mask_ratio: float
    file_bytes: int
    bits_per_param: float
    fingerprint_check: str | None = None  # "ok", "forced: N differ", or None (no model given)
    mismatched: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(mask: Mask, path: str) -> MaskSummary:
    tensors = []
    for name in mask.names:
        numel = mask.numel(name)
        masked = numel - mask.kept(name)
        tensors.append(TensorSummary(name, list(mask.shapes[name]), numel, masked, masked / max(numel, 1)))
    masked_total = sum(t.masked for t in tensors)
    return MaskSummary(
        path=os.fspath(path),
        format="mftlab.mask",
        format_version="1",
        codec=mask.codec,
        mftlab_version=mask.mftlab_version,
        base_model=mask.base_model,
        method=mask.method,
        tensors=tensors,
        total=mask.total,
        masked=masked_total,
        mask_ratio=masked_total / max(mask.total, 1),
        file_bytes=os.path.getsize(path),
        bits_per_param=file_bits_per_param(path, mask),
    )

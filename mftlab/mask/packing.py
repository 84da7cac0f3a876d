"""Bit packing of boolean masks: pure functions, no file I/O.

Layout (CONTRIBUTING.md, section 3): bits packed along the last axis, least-significant bit first
(`numpy.packbits(axis=-1, bitorder="little")`), each row padded with zero bits. A logical
shape `[R, C]` packs to `[R, ceil(C/8)]`, a 1-D shape `[n]` to `[ceil(n/8)]`. This is the
compressed-tensors bitmask layout. Bit 1 = kept, bit 0 = masked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported lazily: reading and comparing masks never needs it
    import torch

# Popcount of every byte value; np.bitwise_count needs numpy 2.0.
_POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def packed_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Packed shape of a logical mask shape: the last axis becomes ceil(last / 8) bytes."""
    if len(shape) == 0:
        return (1,)
    return tuple(shape[:-1]) + ((shape[-1] + 7) // 8,)


def pack_bits(keep: "torch.Tensor | np.ndarray") -> np.ndarray:
    """Pack a boolean keep-mask (any shape, True = kept) into uint8 along the last axis."""
    if hasattr(keep, "detach"):  # a torch tensor
        import torch

        keep = keep.detach().to("cpu", torch.bool).numpy()
    keep = np.asarray(keep, dtype=bool)
    if keep.ndim == 0:
        keep = keep.reshape(1)
    return np.packbits(keep, axis=-1, bitorder="little")


def unpack_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Unpack uint8 bytes to a boolean array of the logical `shape` (padding bits dropped)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 0:
        return np.unpackbits(packed, count=1, bitorder="little").astype(bool).reshape(())
    bits = np.unpackbits(packed, axis=-1, count=shape[-1], bitorder="little")
    return bits.astype(bool).reshape(shape)


def popcount(packed: np.ndarray) -> int:
    """Number of set bits (kept weights) in a packed array. Padding bits must be zero."""
    if hasattr(np, "bitwise_count"):
        return int(np.bitwise_count(packed).sum(dtype=np.int64))
    return int(_POPCOUNT_TABLE[packed].sum(dtype=np.int64))


def padding_is_zero(packed: np.ndarray, last_dim: int) -> bool:
    """True when the unused high bits of each row's last byte are all zero."""
    used = last_dim % 8
    if used == 0 or packed.size == 0:
        return True
    pad_bits = np.uint8((0xFF << used) & 0xFF)
    return not np.any(packed[..., -1] & pad_bits)

"""Mask flips counted from bit-packed copies, so training holds one full keep-mask, not three.

The trainer logs how many keep bits changed since the last logged step and since step 0. Holding
those two masks as bool tensors (one byte per weight each) costs two extra copies of the mask:
19 GB for all-layer MFT of a 7B model. `FlipCounter` keeps them packed eight bits to a byte on
the mask's device instead; the count is a popcount of the XOR, one tensor at a time, so the only
full-size mask alive is the one the wrappers use.

Packing here is flat (the tensor's elements in order, zero-padded to a multiple of 8): these
copies are never written to a file, so they need not follow the mask file's row layout.
"""

from __future__ import annotations

import torch

_BIT_WEIGHTS = (1, 2, 4, 8, 16, 32, 64, 128)
_POPCOUNT = torch.tensor([bin(i).count("1") for i in range(256)], dtype=torch.uint8)


def pack_flat(keep: torch.Tensor) -> torch.Tensor:
    """(ceil(n / 8),) uint8: the boolean tensor's elements in order, 8 to a byte, LSB first."""
    flat = keep.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    weights = torch.tensor(_BIT_WEIGHTS, dtype=torch.uint8, device=flat.device)
    return (flat.view(-1, 8) * weights).sum(dim=1, dtype=torch.uint8)  # distinct powers of two: no overflow


def packed_bytes(keep: dict[str, torch.Tensor]) -> int:
    """Bytes one packed copy of these masks takes (what the planner counts per copy)."""
    return sum((k.numel() + 7) // 8 for k in keep.values())


def _popcount(packed: torch.Tensor) -> int:
    return int(_POPCOUNT.to(packed.device)[packed.long()].sum(dtype=torch.int64))


class FlipCounter:
    """Flips since the last logged step and since step 0, from two packed copies (1/8 of a bool each)."""

    def __init__(self, start: dict[str, torch.Tensor]):
        self.start = {name: pack_flat(k) for name, k in start.items()}
        self.last = self.start  # the same bytes until the first log

    def to(self, device) -> None:
        """Move both copies to the mask's device (the CPU start of a run whose model moved)."""
        moved = {name: t.to(device) for name, t in self.start.items()}
        self.last = moved if self.last is self.start else {name: t.to(device) for name, t in self.last.items()}
        self.start = moved

    def restart(self, keep: dict[str, torch.Tensor]) -> None:
        """`keep` becomes the new 'last' (the mask a resumed run starts from; step 0's stays)."""
        self.last = {name: pack_flat(k) for name, k in keep.items()}

    def count(self, keep: dict[str, torch.Tensor]) -> tuple[int, int]:
        """(flips since the last call, flips since step 0); `keep` becomes the new 'last'."""
        packed = {name: pack_flat(k) for name, k in keep.items()}
        since_last = sum(_popcount(torch.bitwise_xor(packed[n], self.last[n])) for n in packed)
        since_start = sum(_popcount(torch.bitwise_xor(packed[n], self.start[n])) for n in packed)
        self.last = packed
        return since_last, since_start

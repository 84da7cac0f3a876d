"""One way to turn names into seeds, so every seeded draw is reproducible alone.

A random draw that belongs to one tensor (its initial scores, its random-mask ranking, a landscape
direction) is seeded from the run's seed and the tensor's name, not from a shared generator: the
draw is then the same whatever the order, subset or sharding of the tensors, on any host and in
any process.
"""

from __future__ import annotations

import hashlib

import torch


def name_seed(seed: int, *names: object) -> int:
    """A 63-bit seed from `seed` and one or more names, e.g. name_seed(0, "model.layers.0.mlp.up_proj.weight").

    blake2b of "seed:name1:name2..." (8 bytes, little-endian, top bit cleared so it fits int64).
    """
    text = ":".join(str(part) for part in (int(seed), *names))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def name_generator(seed: int, *names: object, device="cpu") -> torch.Generator:
    """A torch.Generator on `device` seeded with name_seed(seed, *names)."""
    return torch.Generator(device=device).manual_seed(name_seed(seed, *names))

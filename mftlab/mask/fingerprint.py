"""Fingerprints bind a mask to the exact weights it was learned on.

A weight's fingerprint hashes its values cast to bfloat16 (plus its shape), so the same
weights loaded in fp32 or bf16 match while a different fine-tune does not.
"""

from __future__ import annotations

import hashlib
import json

PREFIX = "bf16-blake2b:"


def tensor_fingerprint(weight) -> str:
    """Hash of `weight`'s values rounded to bfloat16, e.g. 'bf16-blake2b:3f2a...' (32 hex)."""
    import torch

    values = weight.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16)
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(list(weight.shape)).encode())
    digest.update(memoryview(values.numpy()).cast("B"))
    return PREFIX + digest.hexdigest()


def combined_fingerprint(fingerprints: dict[str, str]) -> str:
    """One fingerprint for a set of tensors (order-independent: sorted by name)."""
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(fingerprints):
        digest.update(f"{name}={fingerprints[name]}\n".encode())
    return PREFIX + digest.hexdigest()

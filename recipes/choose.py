"""Choosing among variants on validation only: one rule for the sweeps and the protocol.

Every candidate (a sweep point, an MFT variant of the protocol, a checkpoint) carries its
validation loss; the chosen one is the candidate with the lowest validation loss. Test numbers
may sit beside it in the same row, but this function never reads them, so a table can show them
without their having influenced the choice. Ties go to the first candidate in the given order.
"""

from __future__ import annotations

import math

from mftlab.errors import MftlabError


def best_on_validation(candidates: list[dict], key: str = "validation_loss") -> int:
    """Index of the candidate with the lowest finite `key` (validation loss); an error when none has one."""
    best, best_value = None, math.inf
    for i, row in enumerate(candidates):
        value = row.get(key)
        if value is not None and math.isfinite(value) and value < best_value:
            best, best_value = i, value
    if best is None:
        raise MftlabError(f"no candidate has a finite '{key}' to choose on; check that validation data was scored")
    return best

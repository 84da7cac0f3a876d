"""Numbers for result files: JSON has no NaN or Infinity, so such values are saved as null.

Result files themselves (names, header, kind-checked reading and writing) are the contract in
`mftlab.files.results`.
"""

from __future__ import annotations

import math


def finite(x: float | None, digits: int = 12) -> float | None:
    """A float that JSON can hold: NaN becomes None, +-inf becomes None (say why in the docs)."""
    if x is None:
        return None
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return None
    return float(f"{x:.{digits}g}")

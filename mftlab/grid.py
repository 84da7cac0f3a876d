"""The size of a landscape grid, as `--grid` writes it: one parser for `mftlab landscape` and `mftlab plan`."""

from __future__ import annotations

from mftlab.errors import ConfigError

MAX_POINTS = 1_000_000


def parse_grid(text: str) -> tuple[int, int]:
    """'21x21' or '31x11' -> (nx, ny); '41' -> (41, 1), a line. At most MAX_POINTS points."""
    parts = str(text).lower().replace(" ", "").split("x")
    ok = len(parts) in (1, 2) and all(p.isdigit() and int(p) >= 1 for p in parts)
    if not ok:
        raise ConfigError(f"--grid '{text}' is not a grid size; write NXxNY such as 21x21 (or N for a line)")
    nx, ny = int(parts[0]), int(parts[1]) if len(parts) == 2 else 1
    if nx * ny > MAX_POINTS:
        raise ConfigError(f"--grid '{text}' has {nx * ny:,} points; use at most {MAX_POINTS:,} (e.g. 51x51)")
    return nx, ny

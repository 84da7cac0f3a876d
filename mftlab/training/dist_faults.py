"""Faults of multi-process runs, turned into one clear error instead of a hang or a traceback.

A process that stops answering (stopped, swapped out, stuck in a driver) makes every collective
of the others wait; with a process-group timeout (`--dist-timeout`) the collective raises after
that many seconds instead, and a process that died makes its peers' collectives fail at once.
`distributed_faults` turns both into a `TrainingError` (the CLI prints it as one `Error:` line and
exits 1; the launcher then stops the remaining processes).
"""

from __future__ import annotations

import contextlib
import datetime
import sys

from mftlab.errors import TrainingError

# Fragments of the messages gloo / NCCL / c10d raise when a peer stops answering or goes away.
_TIMEOUT = ("timed out", "timeout", "watchdog caught collective operation timeout")
_PEER_LOST = (
    "connection closed by peer",
    "connection reset by peer",
    "broken pipe",
    "connection refused",
    "socket closed",
    "recv failed",
    "send failed",
)


def process_group_timeout(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def _rank(exc: BaseException) -> str | None:
    """'process R' in a multi-process run (or 'a process' while the group is being set up), else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not dist.is_available():
        return None
    if dist.is_initialized():
        return f"process {dist.get_rank()}" if dist.get_world_size() > 1 else None
    return "a process" if isinstance(exc, getattr(dist, "DistError", ())) else None  # start-up: the store timed out


def classify(exc: BaseException) -> str | None:
    """'timeout', 'peer' or None (not a fault of the process group)."""
    text = str(exc).lower()
    if any(f in text for f in _TIMEOUT):
        return "timeout"
    if any(f in text for f in _PEER_LOST):
        return "peer"
    return None


@contextlib.contextmanager
def distributed_faults(timeout_s: float, flag: str = "--dist-timeout"):
    """Within a multi-process run, re-raise collective timeouts and lost peers as one-line TrainingErrors."""
    try:
        yield
    except RuntimeError as exc:
        rank = _rank(exc)
        kind = classify(exc) if rank is not None else None
        if kind is None:
            raise
        if kind == "timeout":
            raise TrainingError(
                f"{rank}: the other processes did not answer within {flag} {timeout_s:g} s (one of them "
                "stopped or hangs); the run stopped, continue it with --resume from its last checkpoint"
            ) from None
        raise TrainingError(
            f"{rank}: another process of this run went away (killed or crashed); the run stopped, "
            "continue it with --resume from its last checkpoint"
        ) from None

"""SIGKILL a real `mftlab` process at seeded random moments and check what it left behind.

Two kinds of kill moments, drawn by a seeded `random.Random`:
- `time`: after a uniform random delay (covers start-up, computing and writing alike);
- `write`: the moment a temporary entry (`.name.XXXX.tmp`, `.name.new`) appears in the output
  folder, i.e. inside a write window, where a non-atomic writer would leave a torn file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import numpy as np

ENV = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")


def kills_per_command(default: int = 20) -> int:
    """How many kills each command gets; raise with RELIABILITY_KILLS=N."""
    return int(os.environ.get("RELIABILITY_KILLS", default))


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "mftlab.cli.main", *map(str, args)]


def run(*args, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cli(*args), capture_output=True, text=True, env=ENV, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc


def is_temporary(name: str) -> bool:
    """Names the atomic writers use while writing (hidden, so no reader mistakes them for results)."""
    return name.startswith(".") and name.endswith((".tmp", ".new", ".old"))


def _temporaries(root: str) -> list[str]:
    found = []
    for folder, dirs, files in os.walk(root):
        found += [os.path.join(folder, n) for n in dirs + files if is_temporary(n)]
    return found


@dataclass
class KillLog:
    kills: int = 0
    finished_before_kill: int = 0
    at_write: int = 0
    delays: list[float] = field(default_factory=list)

    def __str__(self):
        return (
            f"{self.kills} kills ({self.at_write} inside a write window), "
            f"{self.finished_before_kill} runs finished before their kill"
        )


def torchrun(*args, nproc: int = 2) -> list[str]:
    """`mftlab args` under torchrun with `nproc` CPU (gloo) processes on a free port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "mftlab.cli.main",
        *map(str, args),
    ]


def workers(proc: subprocess.Popen) -> list:
    """The worker processes (psutil.Process) a launcher started, oldest first; [] before they exist."""
    import psutil

    try:
        found = psutil.Process(proc.pid).children()
    except psutil.NoSuchProcess:
        return []
    return [p for p in found if "mftlab.cli.main" in " ".join(_cmdline(p))]


def _cmdline(process) -> list[str]:
    import psutil

    try:
        return process.cmdline()
    except psutil.Error:
        return []


def one_worker(rng: random.Random, nproc: int = 2):
    """A `victim` for run_and_kill: a seeded random worker of a launcher (None until all have started)."""

    def pick(proc):
        found = workers(proc)
        return rng.choice(found).pid if len(found) == nproc else None

    return pick


def run_and_kill(
    args: list,
    watch: str,
    rng: random.Random,
    max_delay: float,
    log: KillLog,
    argv: list[str] | None = None,
    victim=None,
) -> int | None:
    """Start `mftlab args` (or `argv`), SIGKILL it at a seeded moment; returns its exit code if it ended first.

    `victim(proc)`: the pid to kill instead of the started process (a launcher's worker), or None
    while there is none yet; the launcher is then left to stop the other workers.
    """
    proc = subprocess.Popen(argv or cli(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    mode = "write" if rng.random() < 0.5 else "time"
    delay = rng.uniform(0.2, max_delay)  # write mode: the first write window after this delay
    before = set(_temporaries(watch)) if os.path.isdir(watch) else set()
    start = time.monotonic()
    while proc.poll() is None:
        elapsed = time.monotonic() - start
        if mode == "time" and elapsed >= delay:
            break
        if mode == "write":
            now = set(_temporaries(watch)) if os.path.isdir(watch) else set()
            if elapsed < delay:
                before |= now  # windows before the delay do not count
            elif now - before:
                log.at_write += 1
                break
            if elapsed >= delay + max_delay:  # no write window came: kill anyway
                break
        time.sleep(0.003)
    pid = proc.pid
    while victim is not None and proc.poll() is None:
        pid = victim(proc)
        if pid is not None:
            break
        time.sleep(0.01)
    code = proc.poll()
    if code is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        proc.wait(timeout=300)
        log.kills += 1
        log.delays.append(round(time.monotonic() - start, 2))
    else:
        log.finished_before_kill += 1
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if code not in (None, 0):
        raise AssertionError(f"{args} exited {code} before its kill:\n{stderr[-2000:]}")
    return code


# -- invariants ---------------------------------------------------------------------------------
def _check_safetensors(path: str) -> None:
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        meta = f.metadata() or {}
        if meta.get("format") == "mftlab.mask":
            from mftlab.mask.maskfile import load_mask

            load_mask(path)  # full validation: shapes, padding, popcounts
        else:
            for key in f.keys():
                f.get_tensor(key)


def _check_jsonl(path: str, may_tear: bool) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    torn = lines[-1]  # "" when the file ends with a newline
    for line in lines[:-1]:
        if line.strip():
            json.loads(line)
    if torn:
        assert may_tear, f"{path}: last line cut short: {torn[:80]!r}"


def check_folder(root: str, tearable: tuple[str, ...] = ()) -> list[str]:
    """Every non-temporary file under `root` is complete; returns the temporaries found.

    `tearable`: JSON Lines files whose contract allows a torn last line after a kill (the reader
    drops it on resume: trainer's metrics.jsonl, landscape point shards).
    """
    import torch

    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not is_temporary(d)]
        for name in files:
            if is_temporary(name):
                continue
            path = os.path.join(folder, name)
            try:
                if name.endswith(".safetensors"):
                    _check_safetensors(path)
                elif name.endswith(".jsonl"):
                    _check_jsonl(path, any(name.startswith(t) for t in tearable))
                elif name.endswith(".json"):
                    with open(path, encoding="utf-8") as f:
                        json.load(f)
                elif name.endswith(".npz"):
                    with np.load(path) as z:
                        [z[k] for k in z.files]
                elif name.endswith(".pt"):
                    torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
                raise AssertionError(f"incomplete or corrupt file after a kill: {path}: {exc}") from None
    return _temporaries(root)

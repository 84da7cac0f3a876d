"""The output folder of a training run, and how it is written without ever being corrupted.

```
OUT/config.json          resolved TrainConfig (+ mftlab_version), written at the start
OUT/metrics.jsonl        one JSON object per log / eval line, flushed per line
OUT/checkpoints/step-N/  see mftlab.training.checkpoint
OUT/best/                best validation result so far (mask.safetensors, or an HF folder for fft)
OUT/mask.safetensors     final mask (method mask)
OUT/model/               final Hugging Face folder (method fft)
OUT/adapter/             final PEFT adapter (method lora)
```
Every file appears complete or not at all (temporary name, then rename).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from typing import Callable

from mftlab.errors import ConfigError
from mftlab.files.atomic import append_line, atomic_dir, write_text_atomic
from mftlab.training.checkpoint import CHECKPOINTS, list_checkpoints
from mftlab.training.config import TrainConfig

CONFIG = "config.json"
METRICS = "metrics.jsonl"
RUN_FILES = (CONFIG, METRICS, CHECKPOINTS, "best", "mask.safetensors", "model", "adapter")


def check_out_dir(config: TrainConfig) -> None:
    """Validate OUT against --resume / --force (read-only, safe to run on every process)."""
    out = config.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise ConfigError(f"--out '{out}' is a file; give a folder for the run's outputs")
    has_run = os.path.isdir(out) and any(os.path.exists(os.path.join(out, f)) for f in RUN_FILES)
    if config.resume:
        path = os.path.join(out, CONFIG)
        if not os.path.isfile(path):
            raise ConfigError(f"--resume: '{out}' holds no run (no {CONFIG}); start it without --resume")
        previous = read_config(path)
        changed = config.differences(previous)
        if changed:
            name = changed[0]
            raise ConfigError(
                f"--resume: option '{name}' is {getattr(config, name)!r} but the run in '{out}' used "
                f"{getattr(previous, name)!r}; resume with the same options or start a new --out"
            )
        if not list_checkpoints(out):
            raise ConfigError(
                f"--resume: '{out}' holds no checkpoint to resume from; start the run again "
                "without --resume (and use --save-every N to write checkpoints)"
            )
    elif has_run and not config.force:
        raise ConfigError(
            f"--out '{out}' already holds a run; pass --resume to continue it, --force to "
            "start over, or choose another folder"
        )


def read_config(path: str) -> TrainConfig:
    with open(path, encoding="utf-8") as f:
        return TrainConfig.from_dict(json.load(f))


def start_out_dir(config: TrainConfig) -> None:
    """Create OUT (clearing an old run's files with --force) and write config.json. Main process only."""
    out = config.out
    if not config.resume and config.force and os.path.isdir(out):
        for name in RUN_FILES:
            path = os.path.join(out, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    os.makedirs(out, exist_ok=True)
    if not config.resume:
        write_text_atomic(os.path.join(out, CONFIG), json.dumps(config.to_dict(), indent=2) + "\n")


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN; keep the line parseable
    return value


class MetricsLog:
    """Append-only metrics.jsonl, flushed per line; on resume, lines after the checkpoint are dropped."""

    def __init__(self, out_dir: str, resume_step: int | None):
        self.path = os.path.join(out_dir, METRICS)
        if resume_step is not None:
            self._truncate(resume_step)
        self._file = open(self.path, "a", encoding="utf-8")

    def _truncate(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        kept = []
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a kill
                if row.get("step", 0) <= step:
                    kept.append(json.dumps(row))
        write_text_atomic(self.path, "".join(k + "\n" for k in kept))

    def write(self, row: dict) -> None:
        append_line(self._file, json.dumps({k: _clean(v) for k, v in row.items()}))

    def close(self) -> None:
        self._file.close()


def replace_dir(target: str, write: Callable[[str], None]) -> None:
    """Write a folder through `write(tmp_folder)` and swap it in for `target` (which may exist)."""
    parent = os.path.dirname(os.path.abspath(target))
    staging = os.path.join(parent, f".{os.path.basename(target)}.new")
    shutil.rmtree(staging, ignore_errors=True)
    with atomic_dir(staging) as tmp:
        write(tmp)
    old = os.path.join(parent, f".{os.path.basename(target)}.old")
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(target):
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)

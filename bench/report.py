"""Helpers for benchmark scripts: machine description and section-wise updates of BENCHMARKS.md.

Each benchmark owns one `## ` section; rewriting it leaves the other sections untouched.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "BENCHMARKS.md")
HEADER = "# Benchmarks\n\nEvery number below was produced by the command shown in its section; `make bench` reruns all of them.\nRatios compare against a baseline measured in the same run on the same machine.\n"
sys.path.insert(0, ROOT)


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""
    return f"{os.cpu_count()} CPU cores ({cpu}), torch {torch.__version__}, {torch.get_num_threads()} threads{gpu}"


def git_revision() -> str:
    try:
        return subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_section(title: str, body: str) -> None:
    """Replace (or append) the section `## {title}` of BENCHMARKS.md with `body`."""
    text = open(BENCHMARKS).read() if os.path.exists(BENCHMARKS) else HEADER
    section = f"## {title}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    tmp = BENCHMARKS + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, BENCHMARKS)

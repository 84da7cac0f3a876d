"""Launching one protocol step in its own processes, with the exact command kept beside its output.

    launch_step("math (seed 0): full fine-tuning", folder, ["-m", "mftlab.cli.main", "train", ...], runtime)

runs `torchrun --nproc_per_node N --standalone -m mftlab.cli.main train ...` (or with the runtime's
`launcher_args` instead of `--standalone`, e.g. a multi-node rendezvous), after writing the line to
`folder/command.sh` so a user can rerun that one step by hand. Everything the processes print
goes to `folder/log.txt`; a step that fails raises `StepFailed`, one line naming the step, its exit
code, its log file and the log's last line (usually the `Error:` line of the command itself).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

from mftlab.errors import MftlabError
from mftlab.progress.events import PREFIX

COMMAND = "command.sh"
LOG = "log.txt"


class StepFailed(MftlabError):
    """A launched protocol step ended with a non-zero exit code."""


def torchrun() -> list[str]:
    """The torchrun of this Python (its venv's script, else `python -m torch.distributed.run`)."""
    beside = os.path.join(os.path.dirname(sys.executable), "torchrun")
    if os.path.isfile(beside) and os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


def launch_command(runtime, program: list[str]) -> list[str]:
    """The full command line of a step: the launcher, its arguments, then `program` (from `-m ...` on)."""
    where = list(runtime.launcher_args) or ["--standalone"]  # one node, a free port: runs never collide
    return [*torchrun(), "--nproc_per_node", str(runtime.processes), *where, *program]


def write_command(folder: str, command: list[str]) -> str:
    """`folder/command.sh`: the step's command line, runnable from any directory."""
    path = os.path.join(folder, COMMAND)
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "#!/bin/sh\n# One step of `mftlab protocol`, as it was launched; rerun it by hand with: sh command.sh\n"
        )
        f.write(f"cd {shlex.quote(os.getcwd())}\n")
        f.write(shlex.join(command) + "\n")
    os.chmod(path, 0o755)
    return path


def _last_line(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or [""])[-1][:300]


def launch_step(label: str, folder: str, program: list[str], runtime, forward=None) -> float:
    """Run `program` under the launcher with its output in `folder/log.txt`; returns the wall seconds.

    The processes report progress as plain lines (MFTLAB_PROGRESS=plain; process 0 only): each line
    that starts with `lines.PREFIX` is also passed to `forward` (the protocol's output), without it.
    Raises StepFailed naming the step and its log when any process fails.
    """
    command = launch_command(runtime, program)
    write_command(folder, command)
    log = os.path.join(folder, LOG)
    started = time.perf_counter()
    env = dict(os.environ, MFTLAB_PROGRESS="plain", MFTLAB_PROGRESS_LABEL=label)
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {shlex.join(command)}\n")
        out.flush()
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, text=True
        )
        for line in process.stdout:  # the whole log is kept; progress lines also go to the protocol's output
            out.write(line)
            out.flush()
            if forward is not None and line.startswith(PREFIX):
                forward(line[len(PREFIX) :].rstrip("\n"))
        code = process.wait()
    if code != 0:
        last = _last_line(log)
        raise StepFailed(
            f"step '{label}' failed (exit {code}); its log is {log}" + (f" (last line: {last})" if last else "")
        )
    return time.perf_counter() - started

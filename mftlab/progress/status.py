"""`mftlab status OUT`: what a run folder says about its run, read without taking its lock.

    folder_status("protocol-out")   # {"kind": "protocol", "state": "interrupted", "finished": [...], ...}
    status_lines(status)            # the same in words

Kinds: a protocol or demo folder (OUT/progress.json, written at every step header by
mftlab.progress.run_state), a training run (config.json + metrics.jsonl), a landscape
(landscape.run.json + points files), a sweep (points/ folders). The owner comes from the folder lock's
file (pid, host, start): "running" when that process is alive on this host, "interrupted" when the
run's own record says running but its process is gone (killed), else what the record says.
"""

from __future__ import annotations

import json
import os
import socket
import time

from mftlab.errors import MftlabError
from mftlab.files.folder_lock import LOCK_NAME
from mftlab.files.results import read_json_lines as _lines
from mftlab.progress.events import clock
from mftlab.progress.run_state import PROGRESS


def _read(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is not running
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def owner(folder: str) -> dict | None:
    """The lock file's owner (pid, host, started, command) with `alive`, or None when no lock file is there."""
    found = _read(os.path.join(folder, LOCK_NAME))
    if not isinstance(found, dict) or "pid" not in found:
        return None
    here = found.get("host") == socket.gethostname()
    return dict(found, alive=_alive(int(found["pid"])) if here else None)


def _state(recorded: str, who: dict | None) -> str:
    if who is not None and who.get("alive"):
        return "running"
    if recorded == "running":
        return "interrupted"  # its record says running, its process is gone
    return recorded


def _protocol(folder: str, progress: dict, who) -> dict:
    state = _state(progress.get("state", "running"), who)
    running = progress.get("current")
    status = {
        "kind": progress.get("command", "protocol"),
        "state": state,
        "step": progress.get("step"),
        "total": progress.get("total"),
        "finished": progress.get("finished", []),
        "eta_seconds": progress.get("eta_seconds") if state == "running" else None,
        "updated": progress.get("updated"),
    }
    if state == "running":
        status["running"] = running
    elif state == "interrupted":
        status["interrupted"] = running
    if progress.get("state") == "failed":
        status["failed"] = progress.get("failed_step")
        status["error"] = progress.get("error")
    folder_of = progress.get("folder")
    if folder_of:
        status["step_folder"] = os.path.join(folder, folder_of)
        log = os.path.join(folder, folder_of, "log.txt")
        if os.path.exists(log):
            status["log"] = log
        rows = _lines(os.path.join(folder, folder_of, "metrics.jsonl"))
        if rows:
            status["step_progress"] = {k: rows[-1][k] for k in ("step", "loss", "eval_loss") if k in rows[-1]}
    return status


def _training(folder: str, who) -> dict:
    config = _read(os.path.join(folder, "config.json")) or {}
    rows = _lines(os.path.join(folder, "metrics.jsonl"))
    done = any(os.path.exists(os.path.join(folder, name)) for name in ("mask.safetensors", "model", "adapter"))
    last = rows[-1] if rows else {}
    return {
        "kind": "train",
        "state": _state("done" if done else "running", who),
        "method": config.get("method"),
        "step": last.get("step", 0),
        "total": config.get("max_steps"),
        "loss": last.get("loss"),
        "eval_loss": next((r["eval_loss"] for r in reversed(rows) if r.get("eval_loss") is not None), None),
    }


def _landscape(folder: str, who) -> dict:
    run = _read(os.path.join(folder, "landscape.run.json")) or {}
    grid = ((run.get("check") or {}).get("config") or {}).get("grid") or []
    total = 1
    for n in grid:
        total *= n
    rows = [r for n in os.listdir(folder) if n.startswith("landscape.points-") for r in _lines(os.path.join(folder, n))]
    points = len({r.get("i") for r in rows if isinstance(r.get("i"), int) and r["i"] < total})  # grid, not markers
    done = os.path.exists(os.path.join(folder, "landscape.json"))
    return {"kind": "landscape", "state": _state("done" if done else "running", who), "step": points, "total": total}


def _sweep(folder: str, who) -> dict:
    points = os.path.join(folder, "points")
    names = sorted(os.listdir(points)) if os.path.isdir(points) else []
    finished = [n for n in names if os.path.exists(os.path.join(points, n, "result.json"))]
    done = os.path.exists(os.path.join(folder, "sweep.json"))
    return {
        "kind": "sweep",
        "state": _state("done" if done else "running", who),
        "finished": [{"message": n} for n in finished],
        "running": next((n for n in names if n not in finished), None) if not done else None,
    }


def folder_status(folder: str) -> dict:
    """What the run folder `folder` holds: its kind, state, finished / running / failed steps and ETA."""
    if not os.path.isdir(folder):
        raise MftlabError(f"'{folder}' is not a folder; pass the --out folder of a run")
    who = owner(folder)
    progress = _read(os.path.join(folder, PROGRESS))
    if isinstance(progress, dict) and "total" in progress:
        status = _protocol(folder, progress, who)
    elif os.path.exists(os.path.join(folder, "config.json")) and os.path.exists(os.path.join(folder, "metrics.jsonl")):
        status = _training(folder, who)
    elif os.path.exists(os.path.join(folder, "landscape.run.json")):
        status = _landscape(folder, who)
    elif os.path.isdir(os.path.join(folder, "points")) or os.path.exists(os.path.join(folder, "sweep.json")):
        status = _sweep(folder, who)
    else:
        raise MftlabError(
            f"'{folder}' is not an mftlab run folder (no progress.json, metrics.jsonl, landscape or sweep files); "
            "pass the --out folder of protocol, demo, train, sweep or landscape"
        )
    status["folder"] = folder
    if who is not None:
        status["pid"] = who["pid"]
    return status


def status_lines(status: dict) -> list[str]:
    """The status in words, one fact per line."""
    kind, state = status["kind"], status["state"]
    where = f" (pid {status['pid']})" if "pid" in status and state == "running" else ""
    gone = f" (pid {status['pid']} is gone)" if "pid" in status and state == "interrupted" else ""
    lines = [f"{kind} run in {status['folder']}: {state}{where}{gone}"]
    if kind in ("train", "landscape"):
        unit = "steps" if kind == "train" else "points"
        of = f"/{status['total']}" if status.get("total") is not None else ""
        lines.append(f"{status.get('step', 0)}{of} {unit}")
        if status.get("loss") is not None:
            lines.append(
                f"last loss {status['loss']:.4g}"
                + (f", eval loss {status['eval_loss']:.4g}" if status.get("eval_loss") is not None else "")
            )
    finished = status.get("finished") or []
    if finished:
        lines.append(f"finished steps ({len(finished)}):")
        for f in finished:
            took = f"  {clock(f['seconds'])}" if f.get("seconds") is not None else ""
            number = f"({f['step']}/{status['total']}) " if f.get("step") is not None else ""
            lines.append(f"  {number}{f['message']}{took}")
    for key, word in (("running", "running"), ("interrupted", "interrupted at"), ("failed", "failed at")):
        if status.get(key):
            number = f"({status['step']}/{status['total']}) " if kind not in ("sweep",) and status.get("step") else ""
            lines.append(f"{word}: {number}{status[key]}")
    if status.get("step_progress"):
        lines.append(
            "  its progress: "
            + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in status["step_progress"].items()
            )
        )
    if status.get("error"):
        lines.append(f"error: {status['error']}")
    if status.get("log"):
        lines.append(f"its log: {status['log']}")
    if status.get("eta_seconds") is not None:
        as_of = time.strftime("%H:%M:%S", time.localtime(status["updated"]))
        lines.append(f"ETA: {clock(status['eta_seconds'])} left (as of {as_of})")
    if state == "interrupted":
        lines.append("resume with the same command: finished steps are reused")
    return lines

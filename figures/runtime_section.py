"""The report's "Where it ran" section: the protocol's runtime and every step's wall time and peak memory.

Reads what the run recorded: the runtime settings in demo.json's config, one line per executed
step in OUT/steps.jsonl (recipes.step_runner: processes, device, seconds, peak_mem_gib, and the
plan's estimate for that step) and the plan's card in OUT/plan.json when the protocol planned it.
A step recorded twice (run again after its folder was removed) shows its last run.
"""

from __future__ import annotations

import json
import os

from mftlab.files.results import read_json_lines

STEPS_LOG = "steps.jsonl"  # written by mftlab.recipes.step_runner
PLAN_JSON = "plan.json"  # written by mftlab.recipes.protocol_plan
NOTE = (
    "Peak memory is the largest process's: CUDA's peak allocated memory on a GPU, the peak resident "
    "set on the CPU (which includes Python and torch themselves, about 0.4 GiB, and for a step run in "
    "the protocol's own process whatever that process held before it). The plan is `mftlab plan`'s "
    "estimate for the same step (plan.md): model, optimizer and activation memory only."
)


def step_records(result_dir: str) -> list[dict]:
    latest = {}
    for row in read_json_lines(os.path.join(result_dir, STEPS_LOG)):  # a torn last line after a kill is skipped
        latest[(row.get("step"), row.get("folder"))] = row
    return list(latest.values())


def settings_line(config: dict) -> str | None:
    r = config.get("runtime")
    if r is None:
        return None
    where = (
        f"{r['processes']} processes per step, launched by {r['launcher']}"
        if r["processes"] > 1 and r["launcher"] != "none"
        else "every step in the protocol's own process"
    )
    return (
        f"{where}, device {r['device']}, "
        f"dtype {r['dtype'] or 'auto'}, FFT sharding {r['fft_sharding']}, grad_accum {r['grad_accum']}, "
        f"gradient checkpointing {'on' if r['gradient_checkpointing'] else 'off'}."
    )


def _fmt(value, unit: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{unit}" if isinstance(value, float) else f"{value}{unit}"


def rows(result_dir: str) -> list[list[str]]:
    table = [["step", "processes", "device", "wall (s)", "peak (GiB)", "plan (GiB)"]]
    for r in step_records(result_dir):
        table.append(
            [
                r["step"],
                str(r["processes"]),
                r["device"],
                f"{r['seconds']:.1f}",
                _fmt(r.get("peak_mem_gib")),
                _fmt(r.get("plan_gib")),
            ]
        )
    return table


def plan_card(result_dir: str) -> str | None:
    path = os.path.join(result_dir, PLAN_JSON)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("card")

"""Write the `## Fault injection` section of BENCHMARKS.md from a `make reliability` report.

    RELIABILITY_REPORT=reliability.json make reliability
    .venv/bin/python bench/reliability_report.py reliability.json --seconds 1800 --result "25 passed"

Every row is a case the suite tried, with its counts (tests/reliability/conftest.py collects them).
"""

from __future__ import annotations

import argparse
import json

from report import machine, write_section

TITLE = "Fault injection (make reliability)"


def _row(case: str, numbers: dict) -> str:
    n = dict(numbers)
    lost = "nothing lost" if n.pop("nothing_lost", False) else ""
    if "kills" in n:
        tried = f"{n['kills']} kills ({n.get('at_write', 0)} inside a write window)"
        outcome = "every file complete after every kill; " + (
            "newest checkpoint verified; resumed result bit-identical"
            if "train" in case
            else "output complete or absent, identical"
            if "apply" in case
            else "resumed result identical"
        )
        if n.get("finished_before_kill"):
            outcome += f"; {n['finished_before_kill']} run(s) finished before their kill"
    elif "writers" in n:
        tried = f"{n['writers']} writers, {n['rounds']} round(s) of 3 started at once into one --out"
        outcome = (
            f"1 ran per round, {n['refused_in_use']} refused with 'in use'"
            + (f", {n['refused_other']} with 'already holds a run'" if n["refused_other"] else "")
            + "; the winner's results equal a run alone"
        )
    elif "tried" in n:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(n["by_kind"].items()))
        tried = f"{n['tried']} damaged newest checkpoints ({kinds})"
        outcome = (
            f"{n['detected']} detected, --resume fell back to the previous one with one warning; "
            f"{n['resumed_to_the_end']} resumed to the end, bit-identical"
        )
    elif "stops" in n:
        tried = f"{n['stops']} SIGSTOP(s) of one of 2 workers"
        outcome = (
            "one `Error:` line from the other process after "
            + ", ".join(f"{s:g}" for s in n["seconds_to_error"])
            + " s, exit 1; newest checkpoint intact, "
            "the next run resumes from it"
        )
    else:
        tried = f"{n.get('processes', '')} processes"
        outcome = "every process exits with the same one `Error:` line, none hangs"
    return f"| {case} | {tried} | {outcome} | {lost} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("report")
    parser.add_argument("--seconds", type=float, default=None, help="wall time of the make reliability run")
    parser.add_argument("--result", default="", help="pytest's summary line of that run")
    args = parser.parse_args()
    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    lines = [
        f"Command: `RELIABILITY_REPORT=reliability.json make reliability`, then "
        f"`.venv/bin/python bench/reliability_report.py reliability.json`. Machine: {machine()}.",
        "",
        "| case | tried | outcome | |",
        "|---|---|---|---|",
    ]
    lines += [_row(case, numbers) for case, numbers in sorted(report.items())]
    total = sum(v.get("kills", 0) for v in report.values())
    lines += [
        "",
        f"{total} kills in all; seeded moments (RELIABILITY_SEED), counts set by RELIABILITY_KILLS, "
        "RELIABILITY_MP_KILLS, RELIABILITY_HANGS, RELIABILITY_WRITER_ROUNDS, RELIABILITY_DAMAGES.",
    ]
    if args.seconds is not None or args.result:
        wall = f"{args.seconds / 60:.1f} min" if args.seconds is not None else ""
        lines.append(f"Run: {args.result}{', ' if args.result and wall else ''}{wall}.")
    write_section(TITLE, "\n".join(lines))


if __name__ == "__main__":
    main()
